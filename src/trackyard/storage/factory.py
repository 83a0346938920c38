"""The one place that turns settings into open backends.

Every other module asks this factory for the backends it needs and sees them only through
the protocols in :mod:`trackyard.storage.base` and :mod:`trackyard.profiles.storage`; none
names a concrete backend. ``Settings.store_url`` (``TRACKYARD_STORE``) says which backend:

- unset, ``sqlite:`` or ``sqlite://``: SQLite files in the data dir (the default);
- ``sqlite:///ABSOLUTE/DIR``: SQLite files in that directory.

``Settings.log_url`` (``TRACKYARD_LOG``) may put the event log elsewhere:

- unset: the log lives with the state (above);
- ``nats://HOST:PORT[,HOST:PORT...]``: a NATS JetStream stream (``storage/nats/``), which is
  handed the state's dedup index (the long window) and its rejects store.

``postgresql://`` is planned and refused until it exists.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trackyard.config import Settings
from trackyard.storage.base import (
    CursorStore,
    DeadLetters,
    EventLog,
    LeaseProvider,
    LogMaintenance,
    RejectStore,
    SourceRegistry,
    StoreURLError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from trackyard.profiles.storage import ProfileStore
    from trackyard.storage.destinations import DestinationRegistry
    from trackyard.storage.nats._url import JetStreamOptions
    from trackyard.storage.sqlite.store import SQLiteStore

#: Schemes later backends will take, refused until then.
_PLANNED = {
    "postgresql": "PostgreSQL",
    "postgres": "PostgreSQL",
}


def _scheme(settings: Settings) -> str:
    """The configured backend's scheme, or a ``StoreURLError`` that says what is accepted.

    Only the scheme is ever quoted back: a URL may carry a password.
    """
    from trackyard.storage.sqlite.store import URL_FORMS

    url = settings.store_url
    if not url:
        return "sqlite"
    scheme, sep, _ = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise StoreURLError(
            f"TRACKYARD_STORE must be a URL such as sqlite:, not {url!r}. Available today: {URL_FORMS}."
        )
    if scheme == "nats":
        raise StoreURLError(
            "TRACKYARD_STORE: NATS JetStream holds only the event log. Set TRACKYARD_LOG (--log) to the"
            f" nats:// URL and keep the state in a store: {URL_FORMS}."
        )
    if scheme in _PLANNED:
        raise StoreURLError(
            f"TRACKYARD_STORE: the {_PLANNED[scheme]} backend ({scheme}://) is not available yet (planned). "
            f"Available today: {URL_FORMS}."
        )
    if scheme != "sqlite":
        raise StoreURLError(
            f"TRACKYARD_STORE: no backend for the scheme {scheme!r}. Available today: {URL_FORMS}."
        )
    return scheme


def _sqlite_directory(settings: Settings) -> Path:
    _scheme(settings)
    from trackyard.storage.sqlite.store import store_directory

    return store_directory(settings)


def check_store_url(settings: Settings) -> None:
    """Raise ``StoreURLError`` unless the store and log URLs name available backends."""
    _sqlite_directory(settings)
    _log_options(settings)


def _log_options(settings: Settings) -> JetStreamOptions | None:
    """The JetStream log's options when ``settings.log_url`` names one, ``None`` when unset."""
    url = settings.log_url
    if not url:
        return None
    scheme = url.partition(":")[0].lower()
    if scheme != "nats":
        raise StoreURLError(
            f"TRACKYARD_LOG: no event log backend for the scheme {scheme!r}."
            " Available: nats://HOST:PORT[,HOST:PORT...] (NATS JetStream), or unset (the log lives"
            " with the state)."
        )
    from trackyard.storage.nats._url import parse

    return parse(url)


def describe_store(settings: Settings) -> str:
    """Where the store is, for the start-up line."""
    state = f"SQLite in {_sqlite_directory(settings)}"
    options = _log_options(settings)
    return state if options is None else f"{state}, the event log on {options.describe()}"


@dataclass
class Backends:
    """The backends one process opened. ``close()`` closes them all; closing twice is harmless."""

    settings: Settings
    log: EventLog
    sources: SourceRegistry
    rejects: RejectStore
    _open_profiles: Callable[[], ProfileStore] = field(repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _profiles: ProfileStore | None = field(default=None, repr=False)
    _cursors: CursorStore | None = field(default=None, repr=False)
    _dead_letters: DeadLetters | None = field(default=None, repr=False)
    _leases: LeaseProvider | None = field(default=None, repr=False)

    def profiles(self) -> ProfileStore:
        """The profile store, opened on first use (readers that never ask never create it)."""
        if self._profiles is None:
            self._profiles = self._open_profiles()
        return self._profiles

    def cursors(self) -> CursorStore:
        """Consumers' cursors, opened on first use."""
        if self._cursors is None:
            self._open_consumer_stores()
        assert self._cursors is not None
        return self._cursors

    def dead_letters(self) -> DeadLetters:
        """Events consumers gave up on, opened on first use."""
        if self._dead_letters is None:
            self._open_consumer_stores()
        assert self._dead_letters is not None
        return self._dead_letters

    def leases(self) -> LeaseProvider:
        """Which process runs each consumer."""
        if self._leases is None:
            self._leases = open_leases(self.settings)
        return self._leases

    def _open_consumer_stores(self) -> None:
        from trackyard.storage.sqlite.consumers import open_consumer_stores

        self._cursors, self._dead_letters = open_consumer_stores(self.settings.data_dir)

    def close(self) -> None:
        if self._profiles is not None:
            self._profiles.close()
            self._profiles = None
        for consumer_store in (self._cursors, self._dead_letters):
            if consumer_store is not None:
                consumer_store.close()
        self._cursors = self._dead_letters = None
        for close in self._closers:
            close()
        self._closers.clear()


def store_exists(settings: Settings) -> bool:
    """Whether the configured store has been created (the CLI refuses to read a missing one)."""
    from trackyard.storage.sqlite.store import database_path

    _log_options(settings)  # a bad log URL is refused before anything is read
    return database_path(_sqlite_directory(settings)).exists()


def store_bytes(settings: Settings) -> int:
    """The store's size on disk: the log, its rejects and dedup index (SQLite: with its WAL)."""
    from trackyard.storage.sqlite.store import database_path

    database = database_path(_sqlite_directory(settings))
    total = 0
    for path in (database, database.with_name(database.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def open_backends(settings: Settings, *, writer: bool = False) -> Backends:
    """Open the configured backends, creating an empty store if there is none.

    ``writer=True`` in the processes that append to the log. Raises ``StoreURLError`` for a
    store URL that names no available backend.
    """
    directory = _sqlite_directory(settings)
    from trackyard.storage.sqlite.profiles import SQLiteProfiles
    from trackyard.storage.sqlite.store import SQLiteStore

    options = _log_options(settings)
    store = SQLiteStore(settings, writer=writer)
    log: EventLog = store
    closers = [store.close]
    if options is not None:
        jetstream = _jetstream_log(settings, options, store, directory, writer)
        # The log first: its last appends may still hand rejects to the store.
        log, closers = jetstream, [jetstream.close, store.close]
    return Backends(
        settings,
        log=log,
        sources=store,
        rejects=store,
        _open_profiles=lambda: SQLiteProfiles(directory),
        _closers=closers,
    )


def _jetstream_log(
    settings: Settings, options: JetStreamOptions, store: SQLiteStore, directory: Path, writer: bool
) -> EventLog:
    """The log on JetStream, given the SQLite state's dedup index and its rejects store."""
    from trackyard.storage.nats.log import JetStreamLog
    from trackyard.storage.sqlite.dedup_index import SQLiteDedupIndex

    dedup = SQLiteDedupIndex(directory, settings.dedup_window_seconds, settings.durability)
    try:
        return JetStreamLog(
            options,
            dedup,
            store,
            writer=writer,
            max_pending_events=settings.max_pending_events,
            on_close=dedup.close,
        )
    except BaseException:
        dedup.close()
        store.close()
        raise


def open_destinations(settings: Settings) -> DestinationRegistry:
    """The destination registry (docs/destinations.md), created on first use."""
    from trackyard.storage.sqlite.destinations import SQLiteDestinations

    return SQLiteDestinations(settings.data_dir)


def destinations_exist(settings: Settings) -> bool:
    """Whether a destination registry was ever created here (cheap: opens nothing)."""
    from trackyard.storage.sqlite.destinations import registry_exists

    return registry_exists(settings.data_dir)


def maintenance_available(settings: Settings) -> bool:
    """Whether the configured log has compaction and retention here (the SQLite log has;
    a JetStream log keeps its stream's own limits, not applied by trackyard yet)."""
    return _log_options(settings) is None


def open_maintenance(settings: Settings) -> LogMaintenance:
    """Compaction and retention of the configured log (its own connection; the store must exist).

    Raises ``StoreURLError`` for a log without them (see :func:`maintenance_available`)."""
    if not maintenance_available(settings):
        raise StoreURLError(
            "compaction and retention are not available for the JetStream log yet: set the stream's"
            " own max_age and max_bytes limits"
        )
    _sqlite_directory(settings)
    from trackyard.storage.sqlite.maintenance import SQLiteMaintenance

    return SQLiteMaintenance(settings)


def open_leases(settings: Settings) -> LeaseProvider:
    """The lease provider alone (status probes need nothing else): cheap, opens no database."""
    from trackyard.storage.sqlite.consumers import FlockLeases

    return FlockLeases(settings.data_dir)

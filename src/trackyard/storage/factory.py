"""The one place that turns settings into open backends.

Every other module asks this factory for the backends it needs and sees them only through
the protocols in :mod:`trackyard.storage.base` and :mod:`trackyard.profiles.storage`; none
names a concrete backend. Three settings say which backends, composed here:

- ``Settings.state_url`` (``TRACKYARD_STATE``): unset is SQLite in the data dir (the
  embedded default); ``postgresql://`` is PostgreSQL (sources, dedup index, cursors,
  leases, rejects, dead letters, destinations, profiles);
- ``Settings.log_url`` (``TRACKYARD_LOG``): unset keeps the event log in the state backend;
  ``postgresql://`` puts it in PostgreSQL; ``nats://HOST:PORT[,HOST:PORT...]`` in a NATS
  JetStream stream (``storage/nats/``), handed the state's dedup index (the long window)
  and its rejects store;
- ``Settings.store_url`` (``TRACKYARD_STORE``): where the SQLite files are, as before
  (unset, ``sqlite:``, ``sqlite://`` or ``sqlite:///ABSOLUTE/DIR``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

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
    from trackyard.profiles.storage import ProfileStore
    from trackyard.storage.base import DedupIndex, RejectRecord
    from trackyard.storage.destinations import DestinationRegistry
    from trackyard.storage.nats._url import JetStreamOptions
    from trackyard.storage.nats.log import RejectWriter
    from trackyard.storage.postgres._db import Pool
    from trackyard.storage.postgres.gauges import SharedGauges

_POSTGRES = ("postgresql", "postgres")
#: Seconds between two deletions of expired dedup keys in PostgreSQL beside a JetStream log.
DEDUP_EXPIRE_SECONDS = 60.0
_STATE_FORMS = "unset (SQLite in the data dir) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
_LOG_FORMS = (
    "unset (the log lives in the state backend), postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
    "or nats://HOST:PORT[,HOST:PORT...] (NATS JetStream)"
)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Which backend holds the state and which the log, from the settings, checked."""

    state: Literal["sqlite", "postgresql"]
    state_url: str | None
    log: Literal["state", "postgresql", "nats"]
    log_url: str | None
    #: The JetStream log's options, when the log is on NATS.
    jetstream: JetStreamOptions | None = None

    @property
    def pg_log_url(self) -> str | None:
        """The database the log is in, when it is in PostgreSQL."""
        if self.log == "postgresql":
            return self.log_url
        return self.state_url if self.state == "postgresql" else None


def _scheme_of(url: str, setting: str, forms: str) -> str:
    scheme, sep, _ = url.partition(":")
    if not sep or not scheme:
        # Not quoted back: a URL may carry a password.
        raise StoreURLError(f"{setting} must be a URL. Accepted: {forms}.")
    return scheme.lower()


def _layout(settings: Settings) -> _Layout:
    """The checked layout, or a ``StoreURLError`` that says what is accepted (quoting only schemes)."""
    from trackyard.storage.postgres._db import check_url
    from trackyard.storage.sqlite.store import URL_FORMS

    if settings.store_url:
        scheme = _scheme_of(settings.store_url, "TRACKYARD_STORE", URL_FORMS)
        if scheme in _POSTGRES:
            raise StoreURLError(
                "TRACKYARD_STORE names where the SQLite files are. For PostgreSQL, set the state "
                "with --state postgresql://... (TRACKYARD_STATE), and the log with --log (TRACKYARD_LOG)."
            )
        if scheme == "nats":
            raise StoreURLError(
                "TRACKYARD_STORE: NATS JetStream holds only the event log. Set TRACKYARD_LOG (--log) to the"
                f" nats:// URL and keep the state in a store: {URL_FORMS}."
            )
        if scheme != "sqlite":
            raise StoreURLError(
                f"TRACKYARD_STORE: no backend for the scheme {scheme!r}. Accepted: {URL_FORMS}."
            )
    state: Literal["sqlite", "postgresql"] = "sqlite"
    if settings.state_url:
        scheme = _scheme_of(settings.state_url, "TRACKYARD_STATE (--state)", _STATE_FORMS)
        if scheme not in _POSTGRES:
            raise StoreURLError(
                f"TRACKYARD_STATE (--state): no state backend for the scheme {scheme!r}. "
                f"Accepted: {_STATE_FORMS}."
            )
        check_url(settings.state_url, "TRACKYARD_STATE (--state)")
        state = "postgresql"
    log: Literal["state", "postgresql", "nats"] = "state"
    if settings.log_url:
        scheme = _scheme_of(settings.log_url, "TRACKYARD_LOG (--log)", _LOG_FORMS)
        if scheme == "nats":
            from trackyard.storage.nats._url import parse

            return _Layout(
                state, settings.state_url or None, "nats", settings.log_url, parse(settings.log_url)
            )
        if scheme not in _POSTGRES:
            raise StoreURLError(
                f"TRACKYARD_LOG (--log): no log backend for the scheme {scheme!r}. Accepted: {_LOG_FORMS}."
            )
        check_url(settings.log_url, "TRACKYARD_LOG (--log)")
        log = "postgresql"
    return _Layout(state, settings.state_url or None, log, settings.log_url or None)


def _sqlite_directory(settings: Settings) -> Path:
    from trackyard.storage.sqlite.store import store_directory

    return store_directory(settings)


def check_store_url(settings: Settings) -> None:
    """Raise ``StoreURLError`` unless the settings name available backends, well formed."""
    _layout(settings)
    _sqlite_directory(settings)


def describe_store(settings: Settings) -> str:
    """Where the state and the log are, for the start-up line (never with a password)."""
    from trackyard.storage.postgres._db import redact

    layout = _layout(settings)
    state = (
        f"PostgreSQL at {redact(layout.state_url)}"
        if layout.state_url
        else f"SQLite in {_sqlite_directory(settings)}"
    )
    if layout.jetstream is not None:
        return f"state: {state}, the event log on {layout.jetstream.describe()}"
    if layout.log == "postgresql" and layout.log_url and layout.log_url != layout.state_url:
        return f"state: {state}, log: PostgreSQL at {redact(layout.log_url)}"
    return state


@dataclass
class Backends:
    """The backends one process opened. ``close()`` closes them all; closing twice is harmless."""

    settings: Settings
    log: EventLog
    sources: SourceRegistry
    rejects: RejectStore
    _open_profiles: Callable[[], ProfileStore] = field(repr=False)
    _open_consumer_stores: Callable[[], tuple[CursorStore, DeadLetters]] = field(repr=False)
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
            self._cursors, self._dead_letters = self._open_consumer_stores()
        return self._cursors

    def dead_letters(self) -> DeadLetters:
        """Events consumers gave up on, opened on first use."""
        if self._dead_letters is None:
            self._cursors, self._dead_letters = self._open_consumer_stores()
        return self._dead_letters

    def leases(self) -> LeaseProvider:
        """Which process runs each consumer."""
        if self._leases is None:
            self._leases = open_leases(self.settings)
        return self._leases

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
    layout = _layout(settings)
    if layout.state_url is not None:
        from trackyard.storage.postgres._db import schema_exists

        return schema_exists(layout.state_url)
    from trackyard.storage.sqlite.store import database_path

    return database_path(_sqlite_directory(settings)).exists()


def shared_gauges(settings: Settings) -> SharedGauges | None:
    """Where the metrics consumer's reading is shared between nodes: the PostgreSQL state
    database's row; ``None`` with SQLite state, whose nodes share the data dir's file."""
    layout = _layout(settings)
    if layout.state_url is None:
        return None
    from trackyard.storage.postgres.gauges import SharedGauges

    return SharedGauges(layout.state_url)


def store_bytes(settings: Settings) -> int:
    """The store's size on disk: SQLite's log, rejects and dedup index with its WAL; the
    PostgreSQL state database's size."""
    layout = _layout(settings)
    if layout.state_url is not None:
        from trackyard.storage.postgres._db import Pool

        pool = Pool(layout.state_url, size=1)
        try:
            return int(pool.execute("SELECT pg_database_size(current_database())")[0][0])
        finally:
            pool.close()
    from trackyard.storage.sqlite.store import database_path

    database = database_path(_sqlite_directory(settings))
    total = 0
    for path in (database, database.with_name(database.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _pool(url: str, pools: dict[str, Pool]) -> Pool:
    """One pool per database in a process's backends, its schema created on first open."""
    if url not in pools:
        from trackyard.storage.postgres._db import Pool, create_schema

        pool = Pool(url)
        try:
            create_schema(pool)
        except BaseException:
            pool.close()
            raise
        pools[url] = pool
    return pools[url]


def open_backends(settings: Settings, *, writer: bool = False) -> Backends:
    """Open the configured backends, creating an empty store if there is none.

    ``writer=True`` in the processes that append to the log. Raises ``StoreURLError`` for
    settings that name no available backend, ``StoreUnavailable`` for a database that
    cannot be reached.
    """
    layout = _layout(settings)
    pools: dict[str, Pool] = {}
    closers: list[Callable[[], None]] = []
    try:
        return _compose(settings, layout, writer, pools, closers)
    except BaseException:
        for close in reversed(closers):
            close()
        for pool in pools.values():
            pool.close()
        raise


def _compose(
    settings: Settings,
    layout: _Layout,
    writer: bool,
    pools: dict[str, Pool],
    closers: list[Callable[[], None]],
) -> Backends:
    log: EventLog
    rejects: RejectStore
    sources: SourceRegistry
    open_profiles: Callable[[], ProfileStore]
    open_consumer_stores: Callable[[], tuple[CursorStore, DeadLetters]]
    log_url = layout.pg_log_url
    dedup: DedupIndex | None = None
    reject_writer: RejectWriter | None = None
    if log_url is not None:
        from trackyard.storage.postgres.log import PGLog
        from trackyard.storage.postgres.state import PGRejects

        log_pool = _pool(log_url, pools)
        pg_log = PGLog(log_pool, settings, writer=writer)
        closers.append(pg_log.close)
        log, rejects = pg_log, PGRejects(log_pool)
    if layout.state_url is not None:
        from trackyard.storage.postgres._db import Pool
        from trackyard.storage.postgres.profiles import PGProfiles
        from trackyard.storage.postgres.state import PGCursors, PGDeadLetters, PGSources

        state_url = layout.state_url
        state_pool = _pool(state_url, pools)
        pg_sources = PGSources(state_pool)
        closers.append(pg_sources.close)
        sources = pg_sources
        open_profiles = lambda: PGProfiles(state_url)  # noqa: E731
        open_consumer_stores = lambda: (PGCursors(state_pool), PGDeadLetters(state_pool))  # noqa: E731
        if layout.jetstream is not None:
            from trackyard.storage.postgres.state import PGDedup, PGRejects

            pg_rejects = PGRejects(state_pool)
            rejects, reject_writer = pg_rejects, _InThread(pg_rejects.add_rejects)
            # The dedup keys on connections of their own, committed asynchronously (PGDedup).
            dedup_pool = Pool(state_url, session=PGDedup.SESSION)
            pg_dedup = PGDedup(dedup_pool, settings.dedup_window_seconds)
            if writer:  # collectors forget expired keys, as the PostgreSQL log's writer does
                pg_dedup.expire_every(DEDUP_EXPIRE_SECONDS)
            closers.extend((pg_dedup.close, dedup_pool.close))
            dedup = pg_dedup
    else:
        from trackyard.storage.sqlite.consumers import open_consumer_stores as open_sqlite_consumer_stores
        from trackyard.storage.sqlite.profiles import SQLiteProfiles
        from trackyard.storage.sqlite.store import SQLiteStore

        directory = _sqlite_directory(settings)
        # The SQLite store writes only when it holds the log as well.
        store = SQLiteStore(settings, writer=writer and log_url is None)
        closers.append(store.close)
        sources = store
        if log_url is None:
            log, rejects = store, store
        if layout.jetstream is not None:
            from trackyard.storage.sqlite.dedup_index import SQLiteDedupIndex

            sqlite_dedup = SQLiteDedupIndex(directory, settings.dedup_window_seconds, settings.durability)
            closers.append(sqlite_dedup.close)
            dedup, reject_writer = sqlite_dedup, store
        open_profiles = lambda: SQLiteProfiles(directory, settings.profiles_cache_bytes)  # noqa: E731
        open_consumer_stores = lambda: open_sqlite_consumer_stores(settings.data_dir)  # noqa: E731
    if layout.jetstream is not None:
        from trackyard.storage.nats.log import JetStreamLog

        assert dedup is not None and reject_writer is not None
        jetstream = JetStreamLog(
            layout.jetstream,
            dedup,
            reject_writer,
            writer=writer,
            max_pending_events=settings.max_pending_events,
        )
        # Closed first: its last appends may still hand rejects to the state.
        closers.insert(0, jetstream.close)
        log = jetstream
    closers.extend(pool.close for pool in pools.values())
    return Backends(
        settings,
        log=log,
        sources=sources,
        rejects=rejects,
        _open_profiles=open_profiles,
        _open_consumer_stores=open_consumer_stores,
        _closers=closers,
    )


class _InThread:
    """A blocking ``add_rejects`` (PostgreSQL's) as the awaitable the JetStream log calls."""

    def __init__(self, add: Callable[[Sequence[RejectRecord]], None]) -> None:
        self._add = add

    async def add_rejects(self, rejects: Sequence[RejectRecord]) -> None:
        await asyncio.to_thread(self._add, rejects)


def open_destinations(settings: Settings) -> DestinationRegistry:
    """The destination registry (docs/destinations.md), created on first use."""
    layout = _layout(settings)
    if layout.state_url is not None:
        from trackyard.storage.postgres.destinations import PGDestinations

        return PGDestinations(_pool(layout.state_url, {}), owned=True)
    from trackyard.storage.sqlite.destinations import SQLiteDestinations

    return SQLiteDestinations(settings.data_dir)


def destinations_exist(settings: Settings) -> bool:
    """Whether a destination registry was ever created here (cheap: the supervisor asks every second)."""
    layout = _layout(settings)
    if layout.state_url is not None:
        from trackyard.storage.postgres.destinations import any_destination

        return any_destination(layout.state_url)
    from trackyard.storage.sqlite.destinations import registry_exists

    return registry_exists(settings.data_dir)


def maintenance_available(settings: Settings) -> bool:
    """Whether the configured log has retention here: every log has now (the SQLite log with
    compaction, a JetStream log by purging the stream, a PostgreSQL log by dropping
    partitions); kept as the one place to say otherwise for a future backend."""
    _layout(settings)
    return True


def open_maintenance(settings: Settings) -> LogMaintenance:
    """Compaction and retention of the configured log (its own connection; the store must exist)."""
    layout = _layout(settings)
    if layout.jetstream is None and layout.pg_log_url is not None:
        from trackyard.storage.postgres.maintenance import PGMaintenance

        return PGMaintenance(layout.pg_log_url, settings.data_dir, layout.state_url)
    state: LogMaintenance
    if layout.state_url is None:
        _sqlite_directory(settings)
        from trackyard.storage.sqlite.maintenance import SQLiteMaintenance

        state = SQLiteMaintenance(settings)
    else:
        from trackyard.storage.postgres.maintenance import PGMaintenance

        state = PGMaintenance(layout.state_url, settings.data_dir)
    if layout.jetstream is None:
        return state
    from trackyard.storage.nats.maintenance import JetStreamMaintenance

    try:
        return JetStreamMaintenance(layout.jetstream, state)
    except BaseException:
        state.close()
        raise


def open_leases(settings: Settings) -> LeaseProvider:
    """The lease provider alone (status probes need nothing else): cheap, opens no database."""
    layout = _layout(settings)
    if layout.state_url is not None:
        from trackyard.storage.postgres.leases import PGLeases

        return PGLeases(layout.state_url)
    from trackyard.storage.sqlite.consumers import FlockLeases

    return FlockLeases(settings.data_dir)

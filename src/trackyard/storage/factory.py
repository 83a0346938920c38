"""The one place that turns settings into open backends.

Every other module asks this factory for the backends it needs and sees them only through
the protocols in :mod:`trackyard.storage.base` and :mod:`trackyard.profiles.storage`; none
names a concrete backend. ``Settings.store_url`` (``TRACKYARD_STORE``) says which backend:

- unset, ``sqlite:`` or ``sqlite://``: SQLite files in the data dir (the default);
- ``sqlite:///ABSOLUTE/DIR``: SQLite files in that directory.

``postgresql://`` and ``nats://`` are planned and refused until they exist.
"""

from __future__ import annotations

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

#: Schemes later backends will take, refused until then.
_PLANNED = {
    "postgresql": "PostgreSQL",
    "postgres": "PostgreSQL",
    "nats": "NATS JetStream",
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
    """Raise ``StoreURLError`` unless ``settings.store_url`` names an available backend."""
    _sqlite_directory(settings)


def describe_store(settings: Settings) -> str:
    """Where the store is, for the start-up line."""
    return f"SQLite in {_sqlite_directory(settings)}"


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

    return database_path(_sqlite_directory(settings)).exists()


def open_backends(settings: Settings, *, writer: bool = False) -> Backends:
    """Open the configured backends, creating an empty store if there is none.

    ``writer=True`` in the processes that append to the log. Raises ``StoreURLError`` for a
    store URL that names no available backend.
    """
    directory = _sqlite_directory(settings)
    from trackyard.storage.sqlite.profiles import SQLiteProfiles
    from trackyard.storage.sqlite.store import SQLiteStore

    store = SQLiteStore(settings, writer=writer)
    return Backends(
        settings,
        log=store,
        sources=store,
        rejects=store,
        _open_profiles=lambda: SQLiteProfiles(directory),
        _closers=[store.close],
    )


def open_destinations(settings: Settings) -> DestinationRegistry:
    """The destination registry (docs/destinations.md), created on first use."""
    from trackyard.storage.sqlite.destinations import SQLiteDestinations

    return SQLiteDestinations(settings.data_dir)


def destinations_exist(settings: Settings) -> bool:
    """Whether a destination registry was ever created here (cheap: opens nothing)."""
    from trackyard.storage.sqlite.destinations import registry_exists

    return registry_exists(settings.data_dir)


def open_maintenance(settings: Settings) -> LogMaintenance:
    """Compaction and retention of the configured log (its own connection; the store must exist)."""
    _sqlite_directory(settings)
    from trackyard.storage.sqlite.maintenance import SQLiteMaintenance

    return SQLiteMaintenance(settings)


def open_leases(settings: Settings) -> LeaseProvider:
    """The lease provider alone (status probes need nothing else): cheap, opens no database."""
    from trackyard.storage.sqlite.consumers import FlockLeases

    return FlockLeases(settings.data_dir)

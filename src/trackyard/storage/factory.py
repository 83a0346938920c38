"""The one place that turns settings into open backends.

Every other module asks this factory for the backends it needs and sees them only through
the protocols in :mod:`trackyard.storage.base`; none names a concrete backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trackyard.config import Settings
from trackyard.storage.base import (
    CursorStore,
    DeadLetters,
    EventLog,
    LeaseProvider,
    RejectStore,
    SourceRegistry,
    Store,
)

if TYPE_CHECKING:
    from trackyard.profiles.storage import ProfileStore


@dataclass
class Backends:
    """The backends one process opened. ``close()`` closes them all."""

    settings: Settings
    log: EventLog
    sources: SourceRegistry
    rejects: RejectStore
    _closers: list[Store] = field(default_factory=list, repr=False)
    _profiles: ProfileStore | None = field(default=None, repr=False)
    _cursors: CursorStore | None = field(default=None, repr=False)
    _dead_letters: DeadLetters | None = field(default=None, repr=False)
    _leases: LeaseProvider | None = field(default=None, repr=False)

    def profiles(self) -> ProfileStore:
        """The profile store, opened on first use (readers that never ask never create it)."""
        if self._profiles is None:
            from trackyard.storage.sqlite.profiles import SQLiteProfiles

            self._profiles = SQLiteProfiles(self.settings.data_dir)
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
        for backend in self._closers:
            backend.close()
        self._closers.clear()


def store_exists(settings: Settings) -> bool:
    """Whether the configured store has been created (the CLI refuses to read a missing one)."""
    return settings.database_path.exists()


def open_backends(settings: Settings, *, writer: bool = False) -> Backends:
    """Open the configured backends. ``writer=True`` in the processes that append to the log."""
    from trackyard.storage.sqlite.store import SQLiteStore

    store = SQLiteStore(settings, writer=writer)
    return Backends(settings, log=store, sources=store, rejects=store, _closers=[store])


def open_leases(settings: Settings) -> LeaseProvider:
    """The lease provider alone (status probes need nothing else): cheap, opens no database."""
    from trackyard.storage.sqlite.consumers import FlockLeases

    return FlockLeases(settings.data_dir)

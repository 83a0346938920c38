"""The one place that turns settings into open backends.

Every other module asks this factory for the backends it needs and sees them only through
the protocols in :mod:`trackyard.storage.base`; none names a concrete backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trackyard.config import Settings
from trackyard.storage.base import EventLog, RejectStore, SourceRegistry, Store

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

    def profiles(self) -> ProfileStore:
        """The profile store, opened on first use (readers that never ask never create it)."""
        if self._profiles is None:
            from trackyard.storage.sqlite.profiles import SQLiteProfiles

            self._profiles = SQLiteProfiles(self.settings.data_dir)
        return self._profiles

    def close(self) -> None:
        if self._profiles is not None:
            self._profiles.close()
            self._profiles = None
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

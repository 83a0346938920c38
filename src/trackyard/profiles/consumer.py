"""Profiles as a consumer of the log: the sink that builds them, and its progress.

The loop, retries, dead letters and the process it runs in are the consumer framework's
(:mod:`trackyard.consumers`); what is particular to profiles is here. The profile store
commits the cursor in the same transaction as the profiles it produced, so a batch is
never applied twice, whatever kills the process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from trackyard.config import Settings
from trackyard.consumers.runner import Runner, RunPolicy
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import Changes, ProfileReader, ProfileStore, Progress
from trackyard.storage.base import EventLog, StoredEvent
from trackyard.storage.factory import Backends, open_leases

#: The consumer's name: in the registry, its lease, and the CLI.
NAME = "profiles"


class ProfileSink:
    """Applies batches to the profile store, one transaction each, cursor included."""

    def __init__(self, profiles: ProfileStore, settings: ProfileSettings) -> None:
        self._profiles = profiles
        self._builder = ProfileBuilder(profiles, settings)

    def before_read(self) -> None:
        """A requested rebuild forgets every profile here: the next read starts from 0."""
        if self._profiles.rebuild_requested():
            self._profiles.reset()

    def position(self) -> int:
        """The cursor committed with the profiles."""
        return self._profiles.progress().cursor

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        self._builder.apply(events)

    def advance(self, seq: int) -> None:
        progress = self._profiles.begin()
        if seq <= progress.cursor:
            self._profiles.rollback()
            return
        moved = Progress(cursor=seq, processed=progress.processed + 1, next_id=progress.next_id)
        self._profiles.commit(Changes(progress=moved))

    def close(self) -> None:
        """Nothing to close: the profile store belongs to whoever opened it."""


def policy(settings: ProfileSettings) -> RunPolicy:
    return RunPolicy(batch_size=settings.batch_size, poll_interval=settings.poll_interval, pause_gc=True)


def open_runner(backends: Backends) -> Runner:
    """The registry's entry: the profile consumer over the configured backends."""
    settings = ProfileSettings.from_env()
    sink = ProfileSink(backends.profiles(), settings)
    return Runner(NAME, backends.log, sink, backends.cursors(), backends.dead_letters(), policy(settings))


@contextlib.contextmanager
def consumer_lock(settings: Settings) -> Iterator[bool]:
    """Yield whether this caller holds the profile consumer's lease (non-blocking); release on exit."""
    lease = open_leases(settings).acquire(NAME)
    try:
        yield lease is not None
    finally:
        if lease is not None:
            lease.release()


def catch_up(
    store: EventLog,
    profiles: ProfileStore,
    settings: ProfileSettings,
    until: int | None = None,
) -> int:
    """Apply the log to the profiles until there is nothing left to read (or ``until``).

    For one-off runs (an offline rebuild, the benchmark): an event that keeps failing
    stops it with an error instead of going to the dead letters. Returns the events applied.
    """
    sink = ProfileSink(profiles, settings)
    once = RunPolicy(settings.batch_size, max_attempts=1, pause_gc=True)
    runner = Runner(NAME, store, sink, None, None, once)
    return runner.catch_up(until)


def status(
    store: EventLog, profiles: ProfileReader, settings: Settings, rules: ProfileSettings
) -> dict[str, Any]:
    """The consumer's progress: cursor, log head, lag, counts, whether a consumer holds the lease."""
    progress = profiles.progress()
    head = store.head_seq()
    return {
        "running": open_leases(settings).held(NAME),
        "cursor": progress.cursor,
        "head": head,
        "lag": max(head - progress.cursor, 0),
        "processed": progress.processed,
        "rebuild_pending": profiles.rebuild_requested(),
        **profiles.counts(),
        "rules": rules.describe(),
    }


def wait_until_caught_up(
    store: EventLog, profiles: ProfileReader, settings: Settings, timeout: float
) -> dict[str, Any]:
    """Poll :func:`status` until the lag is 0 and no rebuild is pending, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    rules = ProfileSettings.from_env()
    while True:
        current = status(store, profiles, settings, rules)
        if (current["lag"] == 0 and not current["rebuild_pending"]) or time.monotonic() > deadline:
            return current
        time.sleep(0.05)

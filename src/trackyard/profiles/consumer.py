"""The consumer: follows the event log and builds profiles, in exactly one process per data dir.

Every server worker calls :func:`start`. Each starts a consumer process that tries to take
a non-blocking ``flock`` on ``<data dir>/profiles.lock``; the one that gets it builds, the
others retry every second, so when the building one exits (or is killed) another takes
over. The lock is released by the kernel when its holder dies, even on SIGKILL.

A process, not a thread: building profiles is Python work, and in a thread of the server
it would compete with ingestion for the GIL; in its own process it runs on another core.
It dies with the worker that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from trackyard.config import Settings
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import ProfileReader, ProfileStore
from trackyard.storage.base import Store
from trackyard.storage.sqlite.profiles import SQLiteProfiles
from trackyard.storage.sqlite.store import SQLiteStore

LOCK_FILENAME = "profiles.lock"


class EventLike(Protocol):
    """A threading or a multiprocessing Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


_RETRY_LOCK_SECONDS = 1.0
log = logging.getLogger("trackyard.profiles")


@contextlib.contextmanager
def consumer_lock(data_dir: Path) -> Iterator[bool]:
    """Yield whether this caller holds the consumer lock (non-blocking); release on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def catch_up(
    store: Store,
    profiles: ProfileStore,
    settings: ProfileSettings,
    stop: threading.Event | None = None,
    until: int | None = None,
) -> int:
    """Apply the log to the profiles until there is nothing left to read (or ``stop``).

    Returns the number of events applied. ``until`` stops after that seq.
    """
    builder = ProfileBuilder(profiles, settings)
    applied = 0
    while stop is None or not stop.is_set():
        if profiles.rebuild_requested():
            profiles.reset()
        cursor = profiles.progress().cursor
        if until is not None and cursor >= until:
            break
        page = store.read_events(after=cursor, limit=settings.batch_size)
        if until is not None:
            page = [e for e in page if e.seq <= until]
        if not page:
            break
        builder.apply(page)
        applied += len(page)
    return applied


def status(store: Store, profiles: ProfileReader, data_dir: Path, rules: ProfileSettings) -> dict[str, Any]:
    """The consumer's progress: cursor, log head, lag, counts, whether a consumer runs."""
    progress = profiles.progress()
    head = store.head_seq()
    with consumer_lock(data_dir) as free:
        running = not free
    return {
        "running": running,
        "cursor": progress.cursor,
        "head": head,
        "lag": max(head - progress.cursor, 0),
        "processed": progress.processed,
        "rebuild_pending": profiles.rebuild_requested(),
        **profiles.counts(),
        "rules": rules.describe(),
    }


class Consumer(threading.Thread):
    """The consumer loop: run as a thread, or directly (``run()``) in the consumer process."""

    def __init__(self, settings: Settings, profile_settings: ProfileSettings) -> None:
        super().__init__(name="trackyard-profiles", daemon=True)
        self.settings = settings
        self.profile_settings = profile_settings
        self.stopping = threading.Event()
        #: Whether this process holds the lock and builds.
        self.active = False

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def run(self) -> None:
        while not self.stopping.is_set():
            with consumer_lock(self.settings.data_dir) as held:
                if held:
                    self.active = True
                    try:
                        self._follow()
                    finally:
                        self.active = False
                    return
            self.stopping.wait(_RETRY_LOCK_SECONDS)

    def _follow(self) -> None:
        store = SQLiteStore(self.settings, writer=False)
        profiles = SQLiteProfiles(self.settings.data_dir)
        try:
            while not self.stopping.is_set():
                try:
                    applied = catch_up(store, profiles, self.profile_settings, self.stopping)
                except Exception:  # a bad batch must not kill the server; retry after a pause
                    log.exception("building profiles failed; retrying")
                    self.stopping.wait(_RETRY_LOCK_SECONDS)
                    continue
                if not applied:
                    self.stopping.wait(self.profile_settings.poll_interval)
        finally:
            profiles.close()
            store.close()


def start(settings: Settings) -> Callable[[], None] | None:
    context = multiprocessing.get_context("spawn")
    stopping = context.Event()
    process = context.Process(
        target=_run_in_process, args=(settings, stopping, os.getpid()), name="trackyard-profiles", daemon=True
    )
    process.start()

    def stop() -> None:
        stopping.set()
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()
            process.join()

    return stop


def _run_in_process(settings: Settings, stopping: EventLike, parent: int) -> None:
    """The consumer process: build until told to stop, or until the worker that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        # PR_SET_PDEATHSIG (Linux): the kernel sends SIGTERM when the parent dies, SIGKILL included.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        return

    def watch_parent() -> None:  # the portable fallback
        while not stopping.wait(1.0):
            if os.getppid() != parent:
                stopping.set()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    consumer = Consumer(settings, ProfileSettings.from_env())
    consumer.stopping = stopping  # type: ignore[assignment]
    consumer.run()


def wait_until_caught_up(
    store: Store, profiles: ProfileReader, data_dir: Path, timeout: float
) -> dict[str, Any]:
    """Poll :func:`status` until the lag is 0 and no rebuild is pending, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    rules = ProfileSettings.from_env()
    while True:
        current = status(store, profiles, data_dir, rules)
        if (current["lag"] == 0 and not current["rebuild_pending"]) or time.monotonic() > deadline:
            return current
        time.sleep(0.05)

"""Group commit, whatever the database: one writer thread per process and a bounded queue.

Requests hand their events to the writer and wait on a future; the writer takes
everything waiting (up to ``max_commit_events``), writes it in one transaction and
commits once, so concurrent requests share one commit (and one fsync). What a commit
does is the backend's (:meth:`GroupCommitWriter._commit`); the queue, its bound and the
hand-back to the event loops are here, shared by the SQLite and PostgreSQL logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Sequence

from trackyard.config import Settings
from trackyard.errors import Overloaded, StoreUnavailable
from trackyard.storage.base import AppendResult, EventRecord, RejectRecord


class Job:
    __slots__ = ("events", "future", "probe", "rejects", "size")

    def __init__(
        self,
        events: Sequence[EventRecord],
        rejects: Sequence[RejectRecord],
        future: asyncio.Future[AppendResult] | None = None,
        probe: bool = False,
    ) -> None:
        self.events = events
        self.rejects = rejects
        self.probe = probe
        self.size = len(events) + len(rejects)
        #: Where the request waits; ``None`` when nobody does (the breakdown benchmark).
        self.future = future


Outcome = tuple[asyncio.Future[AppendResult], AppendResult | BaseException]


def _settle(outcomes: list[Outcome]) -> None:
    """In the event loop: wake the requests one commit answered."""
    for future, outcome in outcomes:
        if future.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class GroupCommitWriter(threading.Thread):
    """The one thread that appends to the log in this process; subclasses say how to commit."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="trackyard-writer", daemon=True)
        self._max_pending = settings.max_pending_events
        self._max_commit = settings.max_commit_events
        self._jobs: deque[Job] = deque()
        self._pending = 0
        self._stopping = False
        self._cv = threading.Condition()
        #: Transactions committed and events written by this writer, for tests and benchmarks.
        self.commits = 0
        self.written = 0
        self.flushes = 0
        #: Seconds between rounds of upkeep while no request comes (``None``: none then).
        self.idle_upkeep_seconds: float | None = None

    def submit(
        self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord], probe: bool = False
    ) -> asyncio.Future[AppendResult]:
        """Queue a write; the returned future (of the running loop) resolves once it is committed."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        job = Job(events, rejects, future, probe)
        with self._cv:
            if self._stopping:
                raise StoreUnavailable("the store is shutting down")
            # A job larger than the bound still goes through when nothing else waits.
            if self._pending and self._pending + job.size > self._max_pending:
                raise Overloaded(f"{self._pending} events are waiting to be written")
            self._jobs.append(job)
            self._pending += job.size
            self._cv.notify()
        return future

    @property
    def pending(self) -> int:
        return self._pending

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self.join()

    def run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if not jobs:  # idle for ``idle_upkeep_seconds``
                self._between_commits()
                continue
            size = sum(job.size for job in jobs)
            outcomes: list[AppendResult | BaseException]
            try:
                outcomes = list(self._commit(jobs))
            except Exception as exc:  # every failure is reported to the waiting requests
                reason = f"{type(exc).__name__}: {exc}"
                outcomes = [StoreUnavailable(reason) for _ in jobs]
            self._wake(jobs, outcomes)
            with self._cv:
                self._pending -= size
            self._between_commits()

    def _take(self) -> list[Job] | None:
        """The jobs of the next commit; ``[]`` after ``idle_upkeep_seconds`` without any,
        ``None`` once stopped with none left."""
        with self._cv:
            while not self._jobs and not self._stopping:
                if not self._cv.wait(self.idle_upkeep_seconds) and not self._jobs:
                    return []
            if not self._jobs:
                return None
            jobs = [self._jobs.popleft()]
            size = jobs[0].size
            while self._jobs and size + self._jobs[0].size <= self._max_commit:
                job = self._jobs.popleft()
                jobs.append(job)
                size += job.size
            return jobs

    def _commit(self, jobs: list[Job]) -> list[AppendResult]:
        """Write ``jobs`` in one transaction and commit; one result per job, in order."""
        raise NotImplementedError

    def _between_commits(self) -> None:
        """Upkeep the writer does while no request waits on it (SQLite: flushing dedup keys)."""

    @staticmethod
    def _wake(jobs: list[Job], outcomes: list[AppendResult | BaseException]) -> None:
        """One hand-off per event loop and commit, not one per request: each costs the loop a wake-up."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future is not None:
                by_loop.setdefault(job.future.get_loop(), []).append((job.future, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)


def writer_stats(writer: GroupCommitWriter | None) -> dict[str, int]:
    """``EventLog.stats``: a process's transactions committed, events written and waiting, upkeep rounds."""
    if writer is None:
        return {"commits": 0, "written": 0, "pending": 0, "flushes": 0}
    return {
        "commits": writer.commits,
        "written": writer.written,
        "pending": writer.pending,
        "flushes": writer.flushes,
    }

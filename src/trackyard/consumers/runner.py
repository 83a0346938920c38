"""The runner: follows the log after a cursor and hands batches to a sink.

Delivery is at least once. A sink that keeps its own cursor (profiles: the cursor commits
in the same transaction as the profiles) never sees an event twice; for any other sink
the runner commits the cursor in a :class:`~trackyard.storage.base.CursorStore` only
after the sink has returned, so a crash between the two hands the batch over again.

A failing batch is retried with exponential backoff (capped, logged). After
``max_attempts`` failures it is split in halves, and halves again, until the events that
fail alone are found; each of those is kept in the dead letters with its reason after
its own ``max_attempts``, and the consumer goes on past it. One bad event never stops a
consumer, and a sink that is down for a while (every event failing) only delays it:
halves are tried once each, single events with the full backoff.

Before each read the sink may move its own position (``before_read``: a profile rebuild
starts again from 0); status readers only call ``position``, which has no side effect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trackyard.consumers.batches import no_cyclic_gc
from trackyard.storage.base import CursorStore, DeadLetters, EventLog, StoredEvent

log = logging.getLogger("trackyard.consumers")


def mirror_name(consumer: str) -> str:
    """Where the cursor store mirrors the position of a sink that keeps its own."""
    return f"mirror:{consumer}"


class Sink(Protocol):
    """Where a consumer delivers events: profiles today, destinations and warehouses next."""

    def position(self) -> int | None:
        """The seq the sink has committed with its own writes, or ``None`` when the runner
        keeps the cursor (then it commits after :meth:`deliver` returns)."""
        ...

    def before_read(self) -> None:
        """Called before each read of the log (not by status readers): a sink may move its
        own position here (profiles: a requested rebuild starts again from 0)."""
        ...

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Handle ``events`` (in log order) durably, or raise. Events at or before the sink's
        own position may come again after a crash; a sink with a position skips them."""
        ...

    def advance(self, seq: int) -> None:
        """Move the sink's own position past ``seq`` (an event sent to the dead letters).
        A sink without a position does nothing."""
        ...

    def close(self) -> None: ...


class NoSink:
    """The sink of a runner that delivers nothing itself (the destinations manager, whose
    threads' runners deliver; retention, which reads no events). Closing it runs ``close``."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def position(self) -> None:
        return None

    def before_read(self) -> None:
        pass

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        raise AssertionError("this consumer delivers no events itself")

    def advance(self, seq: int) -> None:
        pass

    def close(self) -> None:
        self._close()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds to wait after failures in a row: ``base`` after the first, doubling, at most ``cap``."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(failures - 1, 0)))


@dataclass(frozen=True, slots=True)
class RunPolicy:
    batch_size: int = 1000
    #: Seconds to wait for new events once the consumer has caught up.
    poll_interval: float = 0.05
    #: Failures of one batch (or one event) before it is split (or dead-lettered).
    max_attempts: int = 5
    retry: Backoff = Backoff()
    #: No cyclic garbage collection while a batch is read and delivered
    #: (:func:`~trackyard.consumers.batches.no_cyclic_gc`): for a sink whose batches are
    #: quick and CPU-bound, not one that may retry a delivery for minutes.
    pause_gc: bool = False


class StopFlag:
    """A stop request that a signal handler may set.

    Not a ``threading.Event``: its ``set()`` takes a lock that is not reentrant, and a
    signal handler runs in the main thread, possibly while that very thread holds the
    lock inside ``wait()``, which then never returns (a rare hang at Ctrl-C).
    """

    _SLICE = 0.02

    def __init__(self) -> None:
        self._set = False
        self._linked: list[StopFlag] = []

    def set(self) -> None:
        self._set = True
        for other in self._linked:
            other.set()

    def link(self, other: StopFlag) -> None:
        """Set ``other`` too whenever this one is set (a sink holding its runner's first flag)."""
        self._linked.append(other)
        if self._set:
            other.set()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or ``timeout`` passes (in short slices); whether it is set."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, self._SLICE))
        return True


class _Stopped(Exception):
    """Raised inside the runner when it is asked to stop while waiting to retry."""


class Interrupted(Exception):
    """Raised by a sink that stopped partway through a batch at a stop request: what it had
    committed stays committed (in its own cursor), the rest is read again on the next start."""


class Runner:
    """One consumer's loop over the log. Runs in the consumer's process (or a test's thread)."""

    def __init__(
        self,
        name: str,
        log_: EventLog,
        sink: Sink,
        cursors: CursorStore | None,
        dead_letters: DeadLetters | None,
        policy: RunPolicy,
        stop: StopFlag | None = None,
    ) -> None:
        self.name = name
        self._log = log_
        self.sink = sink
        self._cursors = cursors
        self._dead_letters = dead_letters
        self.policy = policy
        self.stop = stop or StopFlag()
        self._sink_keeps_cursor = False
        #: The position last written to the mirror (``None``: not yet, in this process).
        self._mirrored: int | None = None

    def position(self) -> int:
        """The seq of the last event handled (delivered or dead-lettered)."""
        own = self.sink.position()
        self._sink_keeps_cursor = own is not None
        return self._cursor_store().get(self.name) if own is None else own

    def _cursor_store(self) -> CursorStore:
        assert self._cursors is not None, (
            f"the sink of {self.name} keeps no cursor: give the runner a CursorStore"
        )
        return self._cursors

    def lag(self) -> int:
        """Events in the log the consumer has not handled yet (the log's seqs are dense)."""
        return max(self._log.head_seq() - self.position(), 0)

    def step(self, until: int | None = None) -> int:
        """Read one batch after the cursor and deliver it; return how many events it held."""
        if not self.policy.pause_gc:
            return self._step(until)
        with no_cyclic_gc():
            return self._step(until)

    def _step(self, until: int | None) -> int:
        self.sink.before_read()
        cursor = self.position()
        self._mirror(cursor)
        if until is not None and cursor >= until:
            return 0
        events = self._log.read_events(after=cursor, limit=self.policy.batch_size)
        if until is not None:
            events = [e for e in events if e.seq <= until]
        if not events:
            return 0
        try:
            self._deliver(events, self.policy.max_attempts)
        except _Stopped:
            return 0
        return len(events)

    def catch_up(self, until: int | None = None) -> int:
        """Deliver until nothing is left (or ``until`` is reached, or a stop); the events handled."""
        handled = 0
        while not self.stop.is_set() and (count := self.step(until)):
            handled += count
        return handled

    def run(self) -> None:
        """Follow the log until :attr:`stop` is set; the batch in hand finishes first."""
        log.info("consumer %s: starting after seq %d", self.name, self.position())
        while not self.stop.is_set():
            if not self.step():
                self.stop.wait(self.policy.poll_interval)
        log.info("consumer %s: stopped after seq %d", self.name, self.position())

    def _deliver(self, events: Sequence[StoredEvent], attempts_before_split: int) -> None:
        """Deliver ``events``, splitting them after ``attempts_before_split`` failures."""
        failures = 0
        while True:
            try:
                self.sink.deliver(events)
            except Interrupted:
                raise _Stopped from None
            except Exception as exc:
                failures += 1
                reason = f"{type(exc).__name__}: {exc}"
                if len(events) > 1 and failures >= attempts_before_split:
                    log.warning(
                        "consumer %s: seqs %d-%d failed %d times (%s); splitting to find the failing events",
                        self.name,
                        events[0].seq,
                        events[-1].seq,
                        failures,
                        reason,
                    )
                    middle = len(events) // 2
                    self._deliver(events[:middle], 1)
                    self._deliver(events[middle:], 1)
                    return
                if len(events) == 1 and failures >= self.policy.max_attempts:
                    self._bury(events[0], reason, failures)
                    return
                delay = self.policy.retry.delay(failures)
                log.warning(
                    "consumer %s: seqs %d-%d failed (%s); retry %d in %.1fs",
                    self.name,
                    events[0].seq,
                    events[-1].seq,
                    reason,
                    failures,
                    delay,
                )
                if self.stop.wait(delay):
                    raise _Stopped from None
                continue
            if not self._sink_keeps_cursor:
                self._cursor_store().commit(self.name, events[-1].seq)
            else:
                self._mirror(events[-1].seq)
            return

    def _mirror(self, seq: int) -> None:
        """Copy the position of a sink that keeps its own into the cursor store, when it moved.

        Written after each batch, and before each read when something else moved it (the
        start, a rebuild, a dead letter): readers of a running consumer's position (the
        metrics reader; retention, when the sink's store is held: DuckDB's file) take it
        there without opening the sink's store. Behind the real position at worst.
        """
        if self._sink_keeps_cursor and self._cursors is not None and seq != self._mirrored:
            self._cursors.commit(mirror_name(self.name), seq)
            self._mirrored = seq

    def _bury(self, event: StoredEvent, reason: str, attempts: int) -> None:
        if self._dead_letters is None:  # a one-off run (an offline rebuild): stop and say why
            raise RuntimeError(f"consumer {self.name}: seq {event.seq} failed {attempts} times: {reason}")
        log.error(
            "consumer %s: seq %d failed %d times (%s); kept in the dead letters, going on",
            self.name,
            event.seq,
            attempts,
            reason,
        )
        self._dead_letters.add(self.name, event, reason, attempts)
        self.sink.advance(event.seq)
        if not self._sink_keeps_cursor:
            self._cursor_store().commit(self.name, event.seq)

"""Retries of an unordered destination: failed events parked durably while the cursor goes on.

With per-user order turned off (``destinations add --no-order``), a request that fails
in a retryable way does not hold back the events after it: its events are *parked* in the
destination registry (``parked``: the event, its attempts, when it first failed, when it
is due next) before the runner commits the cursor past them, so a crash loses none.
Before each read of the log the sink retries the parked events that are due, one attempt
a request, with the same backoff (full jitter, ``Retry-After`` honoured) and the same
``retry_for`` as ordered delivery, counted from the first failure. A delivered event is
unparked; one that fails for good, or past ``retry_for``, goes to the dead letters.
So a retried event arrives after events that followed it: that is the trade for never
letting one user's failing event hold back everyone else's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trackyard.destinations.kinds.base import Skipped, Unsendable
from trackyard.destinations.transport import Answer
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import DestinationRegistry, Parked

if TYPE_CHECKING:
    from trackyard.destinations.delivery import DestinationSink, Failure

#: Parked events retried at most at once (one read of the registry).
_DUE_AT_ONCE = 500


def give_up_reason(outcome: str, permanent: bool, retried_for: float, attempts: int) -> str:
    """A dead letter's reason: the answer, why delivery stopped, the attempts and the time."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    gave_up = "permanent" if permanent else f"retried for {retried_for:.0f}s"
    return f"{outcome} ({gave_up}; {attempts} attempts; last at {at})"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Parking:
    """The parked events of one unordered destination."""

    def __init__(self, sink: DestinationSink, registry: DestinationRegistry) -> None:
        self._sink = sink
        self._registry = registry
        self._name = sink.destination.name

    def park(self, events: Sequence[StoredEvent], failure: Failure) -> None:
        """Keep ``events`` of a request that failed once, due after the first backoff."""
        now = _now_ms()
        due = now + int(self._sink.policy.wait(failure.attempts, failure.retry_after) * 1000)
        self._registry.park(
            self._name, [Parked(0, e, failure.attempts, now, due, failure.reason) for e in events]
        )

    def retry_due(self) -> None:
        """One attempt for each parked event that is due; unpark, reschedule, or bury each."""
        due = self._registry.due(self._name, _now_ms(), _DUE_AT_ONCE)
        if not due:
            return
        by_seq = {p.event.seq: p for p in due}
        delivered: list[int] = []
        for item in self._sink.kind.requests(self._sink.destination, [p.event for p in due]):
            if isinstance(item, (Skipped, Unsendable)):  # not for a parked event, but never lose one
                self._sink.bury(item.event, item.reason, by_seq[item.event.seq].attempts)
                self._registry.unpark([by_seq[item.event.seq].id])
                continue
            outcome = self._sink.send(item, keep_trying=False, retry=True)
            parked = [by_seq[e.seq] for e in item.events]
            if isinstance(outcome, Answer):
                refused = self._sink.bury_refused(item, outcome)
                self._registry.unpark([p.id for i, p in enumerate(parked) if i in refused])
                delivered += [p.id for i, p in enumerate(parked) if i not in refused]
                continue
            for p in parked:
                self._after_failure(p, outcome)
        if delivered:
            self._registry.unpark(delivered)
        self._sink.record(len(delivered))

    def _after_failure(self, parked: Parked, failure: Failure) -> None:
        attempts = parked.attempts + failure.attempts
        now = _now_ms()
        delay = self._sink.policy.wait(attempts, failure.retry_after)
        retried_for = (now - parked.first_failed_ms) / 1000
        if failure.final or retried_for + delay > self._sink.policy.retry_for:
            reason = (
                failure.reason
                if failure.final
                else give_up_reason(failure.reason, False, retried_for, attempts)
            )
            self._sink.bury(parked.event, reason, attempts)
            self._registry.unpark([parked.id])
            return
        self._registry.reschedule(
            Parked(
                parked.id,
                parked.event,
                attempts,
                parked.first_failed_ms,
                now + int(delay * 1000),
                failure.reason,
            )
        )

"""Sending a destination's requests: the status classes, retries, and dead letters.

- 2xx: delivered.
- 408, 429, 5xx other than 501, connection errors and timeouts: retried, with exponential
  backoff and full jitter (a random wait between 0 and the doubling cap), never sooner
  than a ``Retry-After`` the receiver sent, for ``retry_for`` seconds (4 hours by default,
  as Segment). Past that, the events go to the dead letters.
- any other status (other 4xx, 501, a 3xx): permanent, to the dead letters at once.

A dead letter's reason holds the status (or the connection error), the response body
(truncated), the attempts and the time. A 2xx answer may still refuse some events of a
request (Bloomreach's per-command results; the kind reads them): those are permanent
failures, the others delivered. An event the kind cannot express is skipped: recorded in
the registry with why, neither delivered nor dead. With order kept (the default), the sink retries
inside :meth:`deliver`, so a destination that is down holds back only its own cursor: the
events after it wait (order is kept), and the other destinations, each in a process of
its own, go on. Without order, a retryable failure parks the request's events
(``parking``) and the cursor goes on; they are retried beside the new events.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from trackyard.consumers.runner import StopFlag
from trackyard.destinations.inflight import Attempt, Senders
from trackyard.destinations.kinds import kind_of
from trackyard.destinations.kinds.base import OutgoingRequest, Skipped, Unsendable
from trackyard.destinations.parking import Parking, give_up_reason
from trackyard.destinations.routing import Router
from trackyard.destinations.transport import Answer
from trackyard.storage.base import DeadLetters, StoredEvent
from trackyard.storage.destinations import Destination, DestinationRegistry, RequestCounts

log = logging.getLogger("trackyard.destinations")
# httpx logs every request at info: a line an event for a webhook with batches of one.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: Characters of a response body kept in a dead letter's reason.
_BODY_KEPT = 500
_RETRIED = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    #: Seconds a failing request is retried before its events go to the dead letters.
    retry_for: float = 4 * 3600.0
    #: The first backoff cap, doubling after each failure up to ``backoff_cap``.
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    #: Seconds to connect, or to wait for the answer, before the attempt counts as failed.
    timeout: float = 10.0
    #: Requests in flight at once, of different people (``trackyard.destinations.inflight``;
    #: only ``koala`` sends requests of one person each). Never two of one person's, so per-user
    #: order holds; 8 because one at a time, each waiting on the receiver's durable write, fell
    #: behind a paced load of many people (1 restores strict log order across people).
    in_flight: int = 8

    @classmethod
    def from_env(cls) -> DeliveryPolicy:
        """``TRACKYARD_DESTINATION_RETRY_SECONDS``, ``_BACKOFF_SECONDS``, ``_BACKOFF_CAP_SECONDS``,
        ``_TIMEOUT_SECONDS``, ``_IN_FLIGHT``: the defaults above when unset."""
        default = cls()

        def number(name: str, value: float) -> float:
            raw = os.environ.get(f"TRACKYARD_DESTINATION_{name}_SECONDS")
            return value if raw in (None, "") else float(raw)

        return cls(
            retry_for=number("RETRY", default.retry_for),
            backoff_base=number("BACKOFF", default.backoff_base),
            backoff_cap=number("BACKOFF_CAP", default.backoff_cap),
            timeout=number("TIMEOUT", default.timeout),
            in_flight=int(os.environ.get("TRACKYARD_DESTINATION_IN_FLIGHT") or default.in_flight),
        )

    def wait(self, failures: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, the capped doubling], but not before ``Retry-After``."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(failures - 1, 0))
        jittered = random.uniform(0, ceiling)
        return jittered if retry_after is None else max(jittered, retry_after)


class DeliveryStopped(Exception):
    """The consumer was asked to stop while a request waited to be retried (nothing is lost:
    the cursor stays before the batch, which goes again after the restart)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that was not delivered: ``final`` when its events go to the dead letters
    now; otherwise (an unordered destination) they are parked and retried later."""

    reason: str
    attempts: int
    final: bool = True
    retry_after: float | None = None


def retryable(status: int) -> bool:
    return status in _RETRIED or (500 <= status <= 599 and status != 501)


def error_class(error: httpx.HTTPError) -> str:
    """The status class of a request that got no answer (``STATUS_CLASSES``)."""
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    return "connection" if isinstance(error, httpx.TransportError) else "error"


class DestinationSink:
    """A :class:`~trackyard.consumers.runner.Sink` for one destination; the runner keeps the cursor."""

    def __init__(
        self,
        destination: Destination,
        registry: DestinationRegistry,
        dead_letters: DeadLetters,
        source_names: Callable[[], dict[int, str]],
        stop: StopFlag,
        policy: DeliveryPolicy,
        *,
        close_registry: bool = False,
    ) -> None:
        self.destination = destination
        self._close_registry = close_registry
        self._registry = registry
        self._dead_letters = dead_letters
        self._source_names = source_names
        self._router = Router(destination, source_names())
        self.kind = kind_of(destination.kind)
        self._stop = stop
        self.policy = policy
        self._senders = Senders(policy.timeout, policy.in_flight)
        # True at first: a retry that a killed process left recorded is cleared by the first answer.
        self._in_retry = True
        self._parking = Parking(self, registry) if not destination.ordered else None
        #: Request outcomes not recorded yet, by status class: written with the next failure
        #: or the batch's delivered count, so a delivered request costs no write of its own.
        self._tally: dict[str, RequestCounts] = {}
        #: Events this sink put in the dead letters (a replay's summary counts its own).
        self._buried = 0

    def position(self) -> None:
        return None

    def before_read(self) -> None:
        if self._parking is not None:
            self._parking.retry_due()

    def advance(self, seq: int) -> None:
        pass

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        self._deliver_all(events)

    def _deliver_all(self, events: Sequence[StoredEvent]) -> int:
        """Deliver what the destination wants of ``events``: how many were delivered."""
        if any(not self._router.knows_source(e.source_id) for e in events) and self.destination.sources:
            self._router = Router(self.destination, self._source_names())  # a source added since
        wanted = [event for event in events if self._router.wants(event)]
        delivered = 0
        skipped: list[Skipped] = []
        requests: list[OutgoingRequest] = []
        for item in self.kind.requests(self.destination, wanted):
            if isinstance(item, Skipped):
                skipped.append(item)
            elif isinstance(item, Unsendable):
                self.bury(item.event, item.reason, 0)
            else:
                requests.append(item)

        def settle(request: OutgoingRequest, first: Attempt) -> None:
            nonlocal delivered
            delivered += self._deliver(request, first)

        self._senders.run(requests, settle)
        if skipped:
            self._registry.skip(
                self.destination.name, [(s.event.seq, s.event.type, s.reason) for s in skipped]
            )
        if delivered or self._tally:
            self.record(delivered)
        return delivered

    def record(self, delivered: int, error: str | None = None) -> None:
        """Record ``delivered`` events, ``error`` as the last one, and the requests tallied since."""
        tally, self._tally = self._tally, {}
        self._registry.record(self.destination.name, delivered, error, tally)

    def _count(self, status_class: str, events: int, retry: bool) -> None:
        counts = self._tally.setdefault(status_class, RequestCounts())
        counts.add(RequestCounts(1, events, int(retry)))

    def _deliver(self, request: OutgoingRequest, first: Attempt) -> int:
        """Settle one request from its ``first`` attempt (retried as the rules say); park or
        dead-letter what failed. How many of its events were delivered."""
        outcome = self.send(request, keep_trying=self._parking is None, first=first)
        if isinstance(outcome, Failure):
            if not outcome.final and self._parking is not None:
                self._parking.park(request.events, outcome)
            else:
                for event in request.events:
                    self.bury(event, outcome.reason, outcome.attempts)
            return 0
        return len(request.events) - len(self.bury_refused(request, outcome))

    def bury_refused(self, request: OutgoingRequest, response: Answer) -> set[int]:
        """Dead-letter the events a 2xx answer refused (the kind reads it); their indexes."""
        refused = self.kind.refused(request, response)
        if refused:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            self.record(0, next(iter(refused.values())))
            for index, why in refused.items():
                self.bury(request.events[index], f"{why} (permanent; in a 2xx answer; last at {at})", 1)
        return set(refused)

    def send_now(self, events: Sequence[StoredEvent]) -> tuple[int, int]:
        """Deliver ``events`` (a replay): how many were delivered and how many dead-lettered
        by this call (counted here: the destination's own process may deliver meanwhile)."""
        buried = self._buried
        delivered = self._deliver_all(events)
        return delivered, self._buried - buried

    def send(
        self,
        request: OutgoingRequest,
        *,
        keep_trying: bool = True,
        retry: bool = False,
        first: Attempt | None = None,
    ) -> Answer | Failure:
        """Send until a 2xx (its response), a permanent answer, or ``retry_for`` has passed;
        without ``keep_trying``, the first retryable failure is returned too (not final).
        ``retry``: the first attempt here is already a retry (of a parked request); ``first``:
        the first attempt's outcome, when it was sent already (in flight with others)."""
        started = time.monotonic()
        failures = 0
        events = len(request.events)
        while True:
            retry_after: float | None = None
            response = self._senders.attempt(request) if first is None else first
            first = None
            if isinstance(response, httpx.HTTPError):
                error = response
                outcome = f"{type(error).__name__}: {error or 'no detail'}"
                permanent = not isinstance(error, httpx.TransportError)
                self._count(error_class(error), events, retry or failures > 0)
            else:
                self._count(f"{response.status_code // 100}xx", events, retry or failures > 0)
                if 200 <= response.status_code <= 299:
                    self._retry_over()
                    return response
                body = response.text[:_BODY_KEPT]
                outcome = f"HTTP {response.status_code}: {body}"
                permanent = not retryable(response.status_code)
                retry_after = _retry_after(response.headers.get("retry-after"))
            failures += 1
            self.record(0, f"{summary(request)}: {outcome}")
            delay = self.policy.wait(failures, retry_after)
            if permanent or time.monotonic() - started + delay > self.policy.retry_for:
                self._retry_over()
                return Failure(
                    give_up_reason(outcome, permanent, time.monotonic() - started, failures), failures
                )
            if not keep_trying:
                return Failure(outcome, failures, final=False, retry_after=retry_after)
            self._in_retry = True
            self._registry.set_retrying(self.destination.name, len(request.events), failures)
            log.warning(
                "destination %s: seqs %d-%d: %s; retry %d in %.1fs",
                self.destination.name,
                request.events[0].seq,
                request.events[-1].seq,
                outcome,
                failures,
                delay,
            )
            if self._stop.wait(delay):
                raise DeliveryStopped(self.destination.name)

    def _retry_over(self) -> None:
        """The request in hand is no longer retried (``destinations show`` says so)."""
        if self._in_retry:
            self._in_retry = False
            self._registry.set_retrying(self.destination.name, 0, 0)

    def bury(self, event: StoredEvent, reason: str, attempts: int) -> None:
        log.error("destination %s: seq %d dead-lettered: %s", self.destination.name, event.seq, reason)
        self._dead_letters.add(self.destination.consumer, event, reason, attempts)
        self._buried += 1

    def close(self) -> None:
        self._retry_over()
        self._senders.close()
        if self._close_registry:
            self._registry.close()


def summary(request: OutgoingRequest) -> str:
    """What a last error says of its request: where it went, which events, how large."""
    first, last = request.events[0].seq, request.events[-1].seq
    seqs = f"seq {first}" if first == last else f"seqs {first}-{last}"
    return f"POST {request.url} ({len(request.events)} events, {seqs}, {len(request.body)} bytes)"


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, given as seconds or as an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)

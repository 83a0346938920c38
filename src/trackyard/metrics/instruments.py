"""The counters and histograms a worker increments: per request, per commit, never per event.

Names follow Prometheus and Vector (``trackyard_`` namespace, ``_total`` counters, base
units: seconds and bytes); labels stay bounded: a route is its template (``/v1/track``,
``/web/{key}/...``), never a raw path; a reason is a refusal code, never a message; a
source is its name, and there are as many as the operator made.

Label children are looked up once and kept (``labels()`` takes a lock and builds a key
each call), so a request costs a few dictionary reads and increments.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trackyard.storage.base import AppendResult, RejectRecord, Source

#: Requests take from a fraction of a millisecond (one event) to seconds (a full batch
#: behind a busy writer); Prometheus's default buckets start at 5 ms.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Refusal codes that are load shedding (the client retries later), beside the guard's own.
OVERLOAD_CODES: Final = {"rate_limited": 429, "overloaded": 429, "store_unavailable": 503}


class RouteMetrics:
    """One route's children: its latency histogram, and its request counter per status.

    Made on a route's first answer, so a scrape lists only the routes that were called.
    """

    __slots__ = ("_by_status", "_duration", "_durations", "_requests", "format", "route")

    def __init__(self, requests: Counter, duration: Histogram, route: str, fmt: str) -> None:
        self.route = route
        self.format = fmt
        self._requests = requests
        self._durations = duration
        self._duration: Histogram | None = None
        self._by_status: dict[int, Counter] = {}

    def answered(self, status: int, seconds: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(self.route, self.format, str(status))
        counter.inc()
        if self._duration is None:
            self._duration = self._durations.labels(self.route)
        self._duration.observe(seconds)


class _SourceMetrics:
    __slots__ = ("deduplicated", "received", "stored")

    def __init__(self, metrics: Metrics, source: str, fmt: str) -> None:
        self.received = metrics.events_received.labels(source, fmt)
        self.stored = metrics.events_stored.labels(source, fmt)
        self.deduplicated = metrics.events_deduplicated.labels(source, fmt)


class Metrics:
    """Every instrument of one worker. ``registry`` is ``None`` in multiprocess mode, where
    values live in files and a scrape reads them all (``trackyard.metrics.exposition``)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "trackyard_http_requests",
            "HTTP requests answered, by route template, wire format and status.",
            ["route", "format", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "trackyard_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "trackyard_http_requests_in_flight",
            "Requests being served now, over every worker.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.events_received = Counter(
            "trackyard_events_received",
            "Events (batch items) of requests that reached the store (stored, deduplicated or "
            "rejected), by source and format.",
            ["source", "format"],
            registry=registry,
        )
        self.events_stored = Counter(
            "trackyard_events_stored",
            "New events durably written to the log, by source and format.",
            ["source", "format"],
            registry=registry,
        )
        self.events_deduplicated = Counter(
            "trackyard_events_deduplicated",
            "Events acknowledged but not stored again: their messageId was already in the log.",
            ["source", "format"],
            registry=registry,
        )
        self.events_rejected = Counter(
            "trackyard_events_rejected",
            "Rejects kept in the rejects store (an invalid event, or a refused body), by source, "
            "format and reason code.",
            ["source", "format", "reason"],
            registry=registry,
        )
        self.requests_refused = Counter(
            "trackyard_ingest_refusals",
            "Collection requests refused whole, by format and reason code (invalid_write_key, "
            "invalid_json, rate_limited, ...).",
            ["format", "reason"],
            registry=registry,
        )
        self.overload_refusals = Counter(
            "trackyard_overload_refusals",
            "Requests shed under load (429) or while the store is unavailable (503), by reason.",
            ["reason", "status"],
            registry=registry,
        )
        self.commit_duration = Histogram(
            "trackyard_commit_duration_seconds",
            "Time a request waits for its durable commit (queueing for the writer included).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._routes: dict[tuple[str, str], RouteMetrics] = {}
        self._sources: dict[tuple[int, str, str], _SourceMetrics] = {}

    def route(self, route: str, fmt: str) -> RouteMetrics:
        key = (route, fmt)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = RouteMetrics(self.requests, self.request_duration, route, fmt)
        return found

    def committed(
        self,
        source: Source,
        fmt: str,
        received: int,
        result: AppendResult | None,
        rejects: Sequence[RejectRecord],
    ) -> None:
        """One request's commit: ``received`` items, what the log made of them, its rejects."""
        key = (source.id, source.name, fmt)
        children = self._sources.get(key)
        if children is None:
            children = self._sources[key] = _SourceMetrics(self, source.name, fmt)
        if received:
            children.received.inc(received)
        if result is not None:
            if result.stored:
                children.stored.inc(result.stored)
            if result.duplicates:
                children.deduplicated.inc(result.duplicates)
        if rejects:  # rare: no cached children
            for code, n in Tally(reject.code for reject in rejects).items():
                self.events_rejected.labels(source.name, fmt, code).inc(n)

    def refused(self, fmt: str, code: str) -> None:
        self.requests_refused.labels(fmt, code).inc()
        status = OVERLOAD_CODES.get(code)
        if status is not None:
            self.shed(code, status)

    def shed(self, reason: str, status: int) -> None:
        self.overload_refusals.labels(reason, str(status)).inc()

"""Per-source rate limits: a token bucket per source, refilled at the source's events/s.

Each worker process keeps its own buckets, so with N workers a source can reach up to N
times its limit when the load balancer spreads it evenly; the docs say so.
"""

from __future__ import annotations

import math
import time

from trackyard.errors import IngestError
from trackyard.storage.base import Source


def rate_limited(retry_after: int, message: str) -> IngestError:
    return IngestError("rate_limited", message, retry_after=max(1, retry_after))


class RateLimiter:
    def __init__(self) -> None:
        # source id -> (tokens, last refill, the rate the bucket was built for)
        self._buckets: dict[int, tuple[float, float, float]] = {}

    def take(self, source: Source, events: int) -> None:
        """Spend ``events`` tokens of ``source``'s bucket or raise a 429 saying when to retry."""
        rate = source.rate_limit
        if rate is None or rate <= 0:
            return
        now = time.monotonic()
        # A second's worth of burst, and never less than one request's worth of events.
        capacity = max(rate, float(events))
        tokens, last, built_for = self._buckets.get(source.id, (capacity, now, rate))
        if built_for != rate:
            tokens = capacity
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens < events:
            self._buckets[source.id] = (tokens, now, rate)
            wait = math.ceil((events - tokens) / rate)
            raise rate_limited(
                wait, f"The source {source.name!r} is over its limit of {rate:g} events/s; retry in {wait} s."
            )
        self._buckets[source.id] = (tokens - events, now, rate)

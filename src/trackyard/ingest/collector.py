"""The part of ingestion every wire format shares: who is sending, may they, and the durable write.

``trackyard.ingest.pipeline`` runs every request through it: the sources, secrets and
rate limits it keeps decide who may send, and it answers only once the store has the
events durably.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from trackyard.config import Settings
from trackyard.errors import IngestError, Overloaded, StoreUnavailable
from trackyard.ingest.auth import SecretChecker, SourceCache
from trackyard.ingest.auth_failures import AuthFailures
from trackyard.ingest.limits import RateLimiter
from trackyard.storage.base import AppendResult, EventLog, EventRecord, RejectRecord, SourceRegistry

if TYPE_CHECKING:
    from trackyard.metrics.instruments import Metrics

#: Seconds a client is asked to wait when the writer is saturated or the store is down.
RETRY_AFTER_SECONDS = 1


class Collector:
    def __init__(
        self, log: EventLog, registry: SourceRegistry, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.log = log
        #: What the pipeline counts into (docs/metrics.md); ``None`` when metrics are off.
        self.metrics = metrics
        self.registry = registry
        self.settings = settings
        self.sources = SourceCache(registry)
        self.secrets = SecretChecker()
        self.limiter = RateLimiter()
        #: Refusals for bad credentials, kept as rejects of no source within a bound.
        self.auth_failures = AuthFailures()

    async def commit(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        """Write durably; turn the store's refusals into the answers clients retry on."""
        started = perf_counter()
        try:
            result = await self.log.append(events, rejects)
        except Overloaded:
            raise IngestError(
                "overloaded",
                "The server is saturated and is shedding load; retry after the Retry-After delay.",
                retry_after=RETRY_AFTER_SECONDS,
            ) from None
        except StoreUnavailable as exc:
            raise IngestError(
                "store_unavailable",
                f"The event store cannot write right now ({exc}); nothing was stored, retry later.",
                retry_after=RETRY_AFTER_SECONDS,
            ) from None
        if self.metrics is not None:
            self.metrics.commit_duration.observe(perf_counter() - started)
        return result

"""``webhook``: events POSTed as JSON, one a request or a JSON array of up to 4,000, signed.

The log holds each event's canonical JSON: the bodies are joined byte for byte, never
decoded and encoded again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence

from trackyard.destinations.kinds.base import Kind, Outgoing, OutgoingRequest, json_headers
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination

#: Segment's Webhooks destination: 1,000 events a batch by default, at most 4,000.
DEFAULT_WEBHOOK_BATCH = 1000
MAX_WEBHOOK_BATCH = 4000


def signature(secret: str, body: bytes) -> str:
    """``X-Signature``: the hex HMAC-SHA1 of the whole body sent, as Segment's webhooks sign."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class Webhook(Kind):
    name = "webhook"

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        size = destination.batch_size
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            body = chunk[0].body if size == 1 else b"[" + b",".join(e.body for e in chunk) + b"]"
            headers = json_headers(destination)
            if destination.secret:
                headers["X-Signature"] = signature(destination.secret, body)
            yield OutgoingRequest(destination.url, body, headers, chunk)

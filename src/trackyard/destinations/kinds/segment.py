"""``segment``: Segment's HTTP Tracking API (``/v1/batch``), to Segment, RudderStack or a trackyard.

The stored canonical JSON is already a Segment Spec message with its ``messageId``: the
bodies are joined byte for byte. Within Segment's limits: 500 KB a request, 2,500 events,
32 KB an event (a larger one is dead-lettered at once: no Segment-compatible receiver takes it).

An event with neither ``userId`` nor ``anonymousId`` (a Koala account's or a Vitally
account's, which name only a group) is one the Segment API refuses: it is skipped with
that said. Only the bytes are searched, so that most events are never decoded here; an
event whose ids are only inside its properties still goes, and the receiver refuses it.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from trackyard.config import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from trackyard.destinations.kinds.base import (
    Kind,
    Outgoing,
    OutgoingRequest,
    Skipped,
    Unsendable,
    basic_auth,
    chunks,
    json_headers,
)
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination

#: What a batch request adds around its events (``{"batch":[...],"sentAt":...}``).
_ENVELOPE_BYTES = 64
_NO_IDS = "no userId and no anonymousId: the Segment API needs one of them"


class Segment(Kind):
    name = "segment"

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        url = destination.url.rstrip("/") + "/v1/batch"
        fitting: list[tuple[StoredEvent, bytes]] = []
        for event in events:
            if len(event.body) > MAX_EVENT_BYTES:
                yield Unsendable(event, f"event of {len(event.body)} bytes, over Segment's 32 KB an event")
            elif b'"userId"' not in event.body and b'"anonymousId"' not in event.body:
                yield Skipped(event, _NO_IDS)
            else:
                fitting.append((event, event.body))
        for chunk in chunks(fitting, MAX_BATCH_EVENTS, MAX_REQUEST_BYTES, _ENVELOPE_BYTES):
            yield self._request(destination, url, [event for event, _ in chunk])

    def _request(self, destination: Destination, url: str, chunk: list[StoredEvent]) -> OutgoingRequest:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        raw = b'{"batch":[' + b",".join(e.body for e in chunk) + b'],"sentAt":"' + sent_at.encode() + b'"}'
        headers = json_headers(
            destination, **{"Content-Encoding": "gzip", "Authorization": basic_auth(destination.key or "")}
        )
        # Level 1: most of the saving for a fraction of the default level's CPU.
        return OutgoingRequest(url, gzip.compress(raw, compresslevel=1), headers, chunk)

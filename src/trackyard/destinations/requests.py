"""Each kind's HTTP requests for a batch of events, built from the stored JSON as it is.

The log holds each event's canonical JSON, which is already a Segment Spec message: the
bodies are joined byte for byte, never decoded and encoded again.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from trackyard.config import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination

#: Segment's Webhooks destination: 1,000 events a batch by default, at most 4,000.
DEFAULT_WEBHOOK_BATCH = 1000
MAX_WEBHOOK_BATCH = 4000
#: What a ``segment`` batch request adds around its events (``{"batch":[...],"sentAt":...}``).
_ENVELOPE_BYTES = 64


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    events: Sequence[StoredEvent] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Unsendable:
    """An event the kind cannot carry at all (too large): dead-lettered without a request."""

    event: StoredEvent
    reason: str


def build(destination: Destination, events: Sequence[StoredEvent]) -> Iterator[OutgoingRequest | Unsendable]:
    if destination.kind == "segment":
        yield from _segment(destination, events)
    else:
        yield from _webhook(destination, events)


def signature(secret: str, body: bytes) -> str:
    """``X-Signature``: the hex HMAC-SHA1 of the whole body sent, as Segment's webhooks sign."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _webhook(destination: Destination, events: Sequence[StoredEvent]) -> Iterator[OutgoingRequest]:
    size = destination.batch_size
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        body = chunk[0].body if size == 1 else b"[" + b",".join(e.body for e in chunk) + b"]"
        headers = {"Content-Type": "application/json", **dict(destination.headers)}
        if destination.secret:
            headers["X-Signature"] = signature(destination.secret, body)
        yield OutgoingRequest(destination.url, body, headers, chunk)


def _segment(
    destination: Destination, events: Sequence[StoredEvent]
) -> Iterator[OutgoingRequest | Unsendable]:
    url = destination.url.rstrip("/") + "/v1/batch"
    chunk: list[StoredEvent] = []
    size = _ENVELOPE_BYTES
    for event in events:
        if len(event.body) > MAX_EVENT_BYTES:
            yield Unsendable(event, f"event of {len(event.body)} bytes, over Segment's 32 KB an event")
            continue
        if chunk and (size + len(event.body) + 1 > MAX_REQUEST_BYTES or len(chunk) >= MAX_BATCH_EVENTS):
            yield _segment_request(destination, url, chunk)
            chunk, size = [], _ENVELOPE_BYTES
        chunk.append(event)
        size += len(event.body) + 1
    if chunk:
        yield _segment_request(destination, url, chunk)


def _segment_request(destination: Destination, url: str, chunk: list[StoredEvent]) -> OutgoingRequest:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raw = b'{"batch":[' + b",".join(e.body for e in chunk) + b'],"sentAt":"' + sent_at.encode() + b'"}'
    credentials = base64.b64encode(f"{destination.key or ''}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Authorization": f"Basic {credentials}",
        **dict(destination.headers),
    }
    # Level 1: most of the saving for a fraction of the default level's CPU.
    return OutgoingRequest(url, gzip.compress(raw, compresslevel=1), headers, chunk)

"""What ``destinations show`` and the admin API say of a destination (never its secrets)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from trackyard.event import parse_timestamp
from trackyard.storage.base import DeadLetter
from trackyard.storage.destinations import Destination, DestinationRegistry
from trackyard.storage.factory import Backends

#: Where ``replay --dead`` notes the last dead letter it re-sent (a cursor, beside the destination's).
REPLAYED = ":replayed-dead"
#: A last error is kept as ``REQUEST SUMMARY: ANSWER``; the summary ends with its size.
_SUMMARY = re.compile(r"^(POST \S+ \(\d+ events, seqs? [\d-]+, \d+ bytes\)): (.*)$", re.DOTALL)


class _ReceivedAt(msgspec.Struct):
    receivedAt: str = ""


_received = msgspec.json.Decoder(_ReceivedAt)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def received_at_ms(body: bytes) -> int | None:
    """An event's ``receivedAt`` in epoch ms, from its stored JSON (``None`` without one)."""
    try:
        value = _received.decode(body).receivedAt
        return parse_timestamp(value) // 1000 if value else None
    except (msgspec.DecodeError, ValueError):
        return None


def outstanding(backends: Backends, destination: Destination) -> list[DeadLetter]:
    """Dead letters not yet replayed, oldest first."""
    after = backends.cursors().get(destination.consumer + REPLAYED)
    return backends.dead_letters().read(destination.consumer, after=after, limit=1_000_000)


def lag_seconds(backends: Backends, cursor: int) -> float:
    """The age of the oldest event not handled yet: now − receivedAt of the event after the cursor."""
    following = backends.log.read_events(after=cursor, limit=1)
    if not following:
        return 0.0
    received = received_at_ms(following[0].body)
    return 0.0 if received is None else max(time.time() - received / 1000, 0.0)


def _last_error(error: str | None, at_ms: int | None) -> dict[str, Any] | None:
    if error is None:
        return None
    found = _SUMMARY.match(error)
    request, response = (found.group(1), found.group(2)) if found else (None, error)
    return {"at": None if at_ms is None else iso(at_ms), "request": request, "response": response}


def requests_line(requests: dict[str, dict[str, int]]) -> str:
    """A status row's ``requests`` in one line: ``2xx: 2 (2 events, 1 retries), 5xx: ...``."""
    return (
        ", ".join(
            f"{kind}: {c['requests']} ({c['events']} events, {c['retries']} retries)"
            for kind, c in requests.items()
        )
        or "none yet"
    )


def status(backends: Backends, registry: DestinationRegistry, destination: Destination) -> dict[str, Any]:
    """Delivered, retrying, dead, lag (events and seconds), last error, and the settings shown."""
    cursor = backends.cursors().get(destination.consumer)
    head = backends.log.head_seq()
    delivered, error, error_at = registry.status(destination.name)
    retrying, attempts = registry.retrying(destination.name)
    skips = registry.skip_counts(destination.name)
    requests = registry.request_counts(destination.name)
    return {
        **destination.public(),
        "consumer": destination.consumer,
        "running": backends.leases().held(destination.consumer),
        "cursor": cursor,
        "head": head,
        "lag": max(head - cursor, 0),
        "lag_seconds": round(lag_seconds(backends, cursor), 3) if head > cursor else 0.0,
        "delivered": delivered,
        "retrying": {"events": retrying, "attempts": attempts},
        "requests": {
            kind: {"requests": c.requests, "events": c.events, "retries": c.retries}
            for kind, c in requests.items()
        },
        "retries": sum(c.retries for c in requests.values()),
        "dead": len(outstanding(backends, destination)),
        "skipped": sum(skips.values()),
        "skipped_by_reason": skips,
        "last_error": _last_error(error, error_at),
    }

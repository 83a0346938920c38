"""The canonical event: a Segment Spec message, plus where trackyard received it.

Every wire format is decoded into this one shape before it is stored. Field order is
fixed so that stored JSON reads the same whatever the client sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from trackyard.errors import CallError

EVENT_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})

#: The Spec's fields in the order trackyard writes them; any other field the client
#: sent (``channel``, ``category``, ``_metadata`` ...) follows them unchanged.
CANONICAL_FIELDS: Final = (
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "event",
    "name",
    "properties",
    "traits",
    "groupId",
    "previousId",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "version",
    "source",
)

#: The Tracking API version trackyard stamps on events that carry none (Segment sends 2).
API_VERSION: Final = 2

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def ordered(event: dict[str, Any]) -> dict[str, Any]:
    """Return ``event`` with the canonical fields first, in canonical order."""
    out: dict[str, Any] = {key: event[key] for key in CANONICAL_FIELDS if key in event}
    if len(out) != len(event):
        for key, value in event.items():
            if key not in out:
                out[key] = value
    return out


# Cached: the events of one request mostly share their sentAt and receivedAt, and SDKs
# stamp many events with the same millisecond. Errors are not cached and still raise.
@lru_cache(maxsize=4096)
def parse_timestamp(value: str) -> int:
    """Parse an ISO-8601 timestamp of any precision and offset into epoch microseconds.

    A value without an offset is taken as UTC, as Segment does. Raises ``ValueError``.
    """
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("not an ISO-8601 string")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# Cached twice: the events of a batch mostly share a (corrected) timestamp, and requests
# arriving in the same second share the formatted date and time.
@lru_cache(maxsize=4096)
def format_timestamp(micros: int) -> str:
    """Format epoch microseconds as Segment does: UTC, milliseconds, ``Z``."""
    seconds, micro = divmod(micros, 1_000_000)
    return f"{_format_second(seconds)}.{micro // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _format_second(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def seconds_to_micros(value: Any, field: str) -> int:
    """A Bloomreach time: float or int Unix seconds, or an ISO-8601 string (a string of
    digits is taken as seconds too). Never milliseconds: Bloomreach does not detect them."""
    micros: int | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        micros = round(value * 1_000_000)
    elif isinstance(value, str):
        try:
            micros = parse_timestamp(value)
        except ValueError:
            try:
                micros = round(float(value) * 1_000_000)
            except (ValueError, OverflowError):
                micros = None
    if micros is not None:
        try:
            format_timestamp(micros)
            return micros
        except (ValueError, OverflowError, OSError):
            pass
    raise CallError(
        "invalid_timestamp",
        f"Field '{field}' must be Unix seconds (such as 1533833360.25) or an ISO-8601 date-time.",
    )


def now_micros() -> int:
    """The wall clock in epoch microseconds (the clock ``datetime.now`` reads, without a datetime)."""
    return time.time_ns() // 1000

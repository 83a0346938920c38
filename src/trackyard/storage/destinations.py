"""Destinations, whatever stores them: the record, its errors, and the registry protocol.

The SQLite registry is ``storage/sqlite/destinations.py``; ``storage/factory.py`` opens it.
What delivers to destinations is ``trackyard.destinations`` (docs/destinations.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trackyard.storage.base import StoredEvent

KINDS = ("webhook", "segment", "koala", "bloomreach", "vitally")
#: What became of a request to a destination: its answer's class, or why there was none.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection", "error")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> None:
    """``ValueError`` for a name that cannot name a consumer (its lease is a file)."""
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not a destination name: 1 to 64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )


class DestinationExists(Exception):
    pass


class NoSuchDestination(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    kind: str
    url: str
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    #: Filters; empty means every source, type or event name.
    sources: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    batch_size: int = 1000
    enabled: bool = True
    #: Per-user order kept: a retried request holds back what follows it. Off, a retried
    #: event is parked and retried beside the rest, which goes on (docs/destinations.md).
    ordered: bool = True
    created_at_ms: int = 0

    @property
    def consumer(self) -> str:
        """The name its cursor and dead letters are kept under."""
        return f"destination:{self.name}"

    def public(self) -> dict[str, Any]:
        """What may be shown: whether a key or secret is set, never its value."""
        return {
            "name": self.name,
            "format": self.kind,
            "url": self.url,
            "key": "set" if self.key else None,
            "secret": "set" if self.secret else None,
            "headers": [name for name, _ in self.headers],
            "sources": list(self.sources),
            "types": list(self.types),
            "events": list(self.events),
            "batch_size": self.batch_size,
            "ordered": self.ordered,
            "enabled": self.enabled,
        }


@dataclass(slots=True)
class RequestCounts:
    """A destination's requests of one status class: how many, the events they carried, and
    how many of them were retries (attempts after a request's first)."""

    requests: int = 0
    events: int = 0
    retries: int = 0

    def add(self, other: RequestCounts) -> None:
        self.requests += other.requests
        self.events += other.events
        self.retries += other.retries


@dataclass(frozen=True, slots=True)
class SkippedEvent:
    """An event a destination did not send because its format cannot express it."""

    seq: int
    type: str
    reason: str
    skipped_at_ms: int


@dataclass(frozen=True, slots=True)
class Parked:
    """An event of an unordered destination waiting for its next attempt."""

    id: int
    event: StoredEvent
    attempts: int
    first_failed_ms: int
    due_ms: int
    reason: str


class DestinationRegistry(Protocol):
    """Where destinations are kept, with each one's delivered count and last error."""

    def destinations(self) -> list[Destination]: ...

    def get(self, name: str) -> Destination:
        """The destination named ``name``, or ``NoSuchDestination``."""
        ...

    def add(self, destination: Destination) -> Destination:
        """Keep a new destination, or ``DestinationExists``."""
        ...

    def set_enabled(self, name: str, enabled: bool) -> Destination: ...

    def update(self, destination: Destination) -> Destination:
        """Replace the destination of that name (its creation time kept), or ``NoSuchDestination``."""
        ...

    def remove(self, name: str) -> Destination: ...

    def record(
        self,
        name: str,
        delivered: int,
        error: str | None = None,
        requests: Mapping[str, RequestCounts] | None = None,
    ) -> None:
        """Count ``delivered`` more events to ``name``, keep ``error`` as its last one, and add
        ``requests`` (by status class) to its request counts: all in one transaction."""
        ...

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms)."""
        ...

    def request_counts(self, name: str) -> dict[str, RequestCounts]:
        """``name``'s requests so far by status class (only the classes it has seen)."""
        ...

    def skip(self, name: str, skips: Sequence[tuple[int, str, str]]) -> None:
        """Record events ``(seq, type, reason)`` that ``name``'s format cannot express; each
        seq once, however often it is read again (a redelivery, a replay)."""
        ...

    def skipped(self, name: str, after: int = 0, limit: int = 1000) -> list[SkippedEvent]:
        """``name``'s skipped events with ``seq > after``, in log order."""
        ...

    def skip_counts(self, name: str) -> dict[str, int]:
        """``name``'s skipped events counted by reason."""
        ...

    def set_retrying(self, name: str, events: int, attempts: int) -> None:
        """The request in hand is being retried: its events and attempts so far (0 events: none)."""
        ...

    def retrying(self, name: str) -> tuple[int, int]:
        """Events in retry now (the request in hand and the parked ones) and the most attempts."""
        ...

    def park(self, name: str, parked: Sequence[Parked]) -> None:
        """Keep events to retry later (their ``id`` is ignored: the registry gives one)."""
        ...

    def due(self, name: str, now_ms: int, limit: int) -> list[Parked]:
        """Parked events whose next attempt is due, in log order."""
        ...

    def reschedule(self, parked: Parked) -> None:
        """Keep a parked event's new attempt count, due time and reason."""
        ...

    def unpark(self, ids: Sequence[int]) -> None:
        """Forget parked events (delivered, or in the dead letters now)."""
        ...

    def close(self) -> None: ...


#: The registry's columns, the same in every backend (filters and headers as JSON text).
COLUMNS = (
    "name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, ordered, "
    "created_at_ms"
)


def destination_row(d: Destination, created_at_ms: int) -> tuple[Any, ...]:
    """``d`` as a row in :data:`COLUMNS` order (flags as bools: SQLite stores them as 1/0)."""
    return (
        d.name,
        d.kind,
        d.url,
        d.key,
        d.secret,
        json.dumps([list(h) for h in d.headers]),
        json.dumps(list(d.sources)),
        json.dumps(list(d.types)),
        json.dumps(list(d.events)),
        d.batch_size,
        d.enabled,
        d.ordered,
        created_at_ms,
    )


def destination_from_row(row: tuple[Any, ...]) -> Destination:
    """A row in :data:`COLUMNS` order as a :class:`Destination`."""
    name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, ordered, created = row
    return Destination(
        name=name,
        kind=kind,
        url=url,
        key=key,
        secret=secret,
        headers=tuple((str(h[0]), str(h[1])) for h in json.loads(headers)),
        sources=tuple(json.loads(sources)),
        types=tuple(json.loads(types)),
        events=tuple(json.loads(events)),
        batch_size=int(batch_size),
        enabled=bool(enabled),
        ordered=bool(ordered),
        created_at_ms=int(created),
    )

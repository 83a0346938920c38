"""Destinations, whatever stores them: the record, its errors, and the registry protocol.

The SQLite registry is ``storage/sqlite/destinations.py``; ``storage/factory.py`` opens it.
What delivers to destinations is ``trackyard.destinations`` (docs/destinations.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

KINDS = ("webhook", "segment")
#: Kinds the issue plans and that are not built yet; ``add`` refuses them with this said.
PLANNED_KINDS = ("koala", "bloomreach", "vitally")


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
            "enabled": self.enabled,
        }


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

    def remove(self, name: str) -> Destination: ...

    def record(self, name: str, delivered: int, error: str | None = None) -> None:
        """Count ``delivered`` more events to ``name``, and keep ``error`` as its last one."""
        ...

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms)."""
        ...

    def close(self) -> None: ...


#: The registry's columns, the same in every backend (filters and headers as JSON text).
COLUMNS = "name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, created_at_ms"


def destination_row(d: Destination, created_at_ms: int) -> tuple[Any, ...]:
    """``d`` as a row in :data:`COLUMNS` order (``enabled`` as a bool: SQLite stores it as 1/0)."""
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
        created_at_ms,
    )


def destination_from_row(row: tuple[Any, ...]) -> Destination:
    """A row in :data:`COLUMNS` order as a :class:`Destination`."""
    name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, created = row
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
        created_at_ms=int(created),
    )

"""Which events a destination gets: its filters, then the event's ``integrations`` object."""

from __future__ import annotations

from typing import Any

import msgspec

from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination

_INTEGRATIONS = b'"integrations"'


def integrations_allow(integrations: object, name: str) -> bool:
    """Segment's semantics: ``All`` defaults to true; the destination's own name (exactly as
    written) overrides it; ``true`` or an object (per-destination options) counts as enabled,
    ``false`` as disabled; any other value leaves ``All`` in charge."""
    if not isinstance(integrations, dict):
        return True
    value = integrations.get(name)
    if value is True or isinstance(value, dict):
        return True
    if value is False:
        return False
    return integrations.get("All", True) is not False


class Router:
    """The filters of one destination, applied to events as read from the log."""

    def __init__(self, destination: Destination, source_names: dict[int, str]) -> None:
        self._destination = destination
        self._source_names = source_names
        self._sources = frozenset(destination.sources)
        self._types = frozenset(destination.types)
        self._events = frozenset(destination.events)

    def wants(self, event: StoredEvent) -> bool:
        if self._types and event.type not in self._types:
            return False
        if self._sources and self._source_names.get(event.source_id) not in self._sources:
            return False
        # Parse only when something inside the body decides: most events carry no integrations.
        if not self._events and _INTEGRATIONS not in event.body:
            return True
        body: dict[str, Any] = msgspec.json.decode(event.body)
        if self._events and body.get("event") not in self._events:
            return False
        return integrations_allow(body.get("integrations"), self._destination.name)

    def knows_source(self, source_id: int) -> bool:
        return source_id in self._source_names

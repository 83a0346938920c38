"""Destination kinds: how each turns events into requests and reads its answers (``base``)."""

from __future__ import annotations

from trackyard.destinations.kinds.base import Kind
from trackyard.destinations.kinds.bloomreach import Bloomreach
from trackyard.destinations.kinds.koala import Koala
from trackyard.destinations.kinds.segment import Segment
from trackyard.destinations.kinds.vitally import Vitally
from trackyard.destinations.kinds.webhook import Webhook

_KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (Webhook(), Segment(), Koala(), Bloomreach(), Vitally())
}


def kind_of(name: str) -> Kind:
    """The kind named ``name`` (one of ``storage.destinations.KINDS``)."""
    return _KINDS[name]

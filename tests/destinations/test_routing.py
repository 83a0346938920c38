"""Which events a destination gets: the integrations object (Segment's semantics) and the filters."""

from __future__ import annotations

import msgspec
import pytest

from trackyard.destinations.routing import Router, integrations_allow
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination


@pytest.mark.parametrize(
    ("integrations", "allowed"),
    [
        (None, True),
        ({}, True),
        ({"All": False}, False),
        ({"All": False, "hook": True}, True),
        ({"All": False, "hook": {"option": 1}}, True),  # an object counts as enabled
        ({"hook": False}, False),
        ({"All": True, "hook": False}, False),
        ({"Hook": False}, True),  # names match exactly
        ({"All": False, "HOOK": True}, False),
        ({"other": False}, True),
    ],
)
def test_integrations_follow_segments_semantics(integrations: object, allowed: bool) -> None:
    assert integrations_allow(integrations, "hook") is allowed


def _event(source_id: int = 1, **body: object) -> StoredEvent:
    body = {"type": "track", "messageId": "m", **body}
    return StoredEvent(1, source_id, str(body["type"]), msgspec.json.encode(body))


def test_filters_by_source_type_and_event_name() -> None:
    names = {1: "web", 2: "ios"}
    by_source = Router(Destination("d", "webhook", "http://x", sources=("ios",)), names)
    assert not by_source.wants(_event(1)) and by_source.wants(_event(2))
    by_type = Router(Destination("d", "webhook", "http://x", types=("identify",)), names)
    assert by_type.wants(_event(type="identify")) and not by_type.wants(_event())
    by_event = Router(Destination("d", "webhook", "http://x", events=("Paid",)), names)
    assert by_event.wants(_event(event="Paid")) and not by_event.wants(_event(event="Signed Up"))
    assert not by_event.wants(_event(type="identify"))  # no event name: not one of those named


def test_the_integrations_object_is_read_from_the_stored_event() -> None:
    router = Router(Destination("d", "webhook", "http://x"), {1: "web"})
    assert not router.wants(_event(integrations={"All": False}))
    assert router.wants(_event(integrations={"All": False, "d": True}))

"""DestinationRegistry: definitions, delivery status, skipped events, retries and parked events."""

from __future__ import annotations

import pytest

from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import (
    Destination,
    DestinationExists,
    NoSuchDestination,
    Parked,
    RequestCounts,
)
from trackyard.storage.factory import Backends, destinations_exist, open_destinations


def test_destinations_are_kept_changed_and_removed(backends: Backends) -> None:
    assert not destinations_exist(backends.settings)
    registry = open_destinations(backends.settings)
    try:
        hook = Destination(
            name="hook",
            kind="webhook",
            url="https://example.com/in",
            secret="sig",
            headers=(("X-Team", "a"),),
            sources=("web",),
            types=("track",),
            ordered=False,
        )
        added = registry.add(hook)
        assert added.created_at_ms > 0 and added.secret == "sig" and not added.ordered
        assert added.headers == (("X-Team", "a"),) and added.sources == ("web",)
        assert destinations_exist(backends.settings)
        with pytest.raises(DestinationExists):
            registry.add(hook)
        assert not registry.set_enabled("hook", False).enabled
        updated = registry.update(Destination(name="hook", kind="webhook", url="https://example.com/v2"))
        assert updated.url == "https://example.com/v2" and updated.created_at_ms == added.created_at_ms
        registry.record("hook", 10)
        registry.record("hook", 5, "HTTP 500")
        registry.record("hook", 1)
        delivered, error, at = registry.status("hook")
        assert (delivered, error) == (16, "HTTP 500") and at is not None
        assert [d.name for d in registry.destinations()] == ["hook"]
        registry.remove("hook")
        assert registry.status("hook") == (0, None, None)
        with pytest.raises(NoSuchDestination):
            registry.get("hook")
        with pytest.raises(NoSuchDestination):
            registry.set_enabled("hook", True)
    finally:
        registry.close()


def test_skipped_retrying_and_parked_events(backends: Backends) -> None:
    registry = open_destinations(backends.settings)
    try:
        registry.add(Destination(name="hook", kind="webhook", url="https://example.com/in", ordered=False))
        registry.skip("hook", [(3, "alias", "no alias"), (5, "group", "no group"), (3, "alias", "no alias")])
        registry.skip("hook", [(7, "alias", "no alias")])
        assert [s.seq for s in registry.skipped("hook")] == [3, 5, 7]
        assert [s.seq for s in registry.skipped("hook", after=3, limit=1)] == [5]
        assert registry.skip_counts("hook") == {"no alias": 2, "no group": 1}
        registry.set_retrying("hook", 4, 2)
        assert registry.retrying("hook") == (4, 2)
        event = StoredEvent(9, 1, "track", b'{"messageId":"m9"}')
        later = StoredEvent(8, 1, "track", b'{"messageId":"m8"}')
        registry.park("hook", [Parked(0, event, 1, 100, 200, "HTTP 503"), Parked(0, later, 3, 100, 900, "x")])
        assert registry.retrying("hook") == (6, 3)
        due = registry.due("hook", now_ms=500, limit=10)
        assert [(p.event, p.attempts, p.reason) for p in due] == [(event, 1, "HTTP 503")]
        registry.reschedule(Parked(due[0].id, event, 2, 100, 1000, "HTTP 502"))
        assert [p.event.seq for p in registry.due("hook", now_ms=1000, limit=10)] == [8, 9]  # log order
        registry.unpark([p.id for p in registry.due("hook", now_ms=1000, limit=10)])
        registry.set_retrying("hook", 0, 0)
        assert registry.retrying("hook") == (0, 0)
    finally:
        registry.close()


def test_request_counts_add_up_by_status_class_with_the_delivered_count(backends: Backends) -> None:
    registry = open_destinations(backends.settings)
    try:
        registry.add(Destination(name="hook", kind="webhook", url="https://example.com/in"))
        assert registry.request_counts("hook") == {}
        registry.record("hook", 0, "HTTP 500", {"5xx": RequestCounts(1, 3, 0)})
        registry.record("hook", 3, None, {"2xx": RequestCounts(1, 3, 1), "timeout": RequestCounts(2, 6, 1)})
        registry.record("hook", 2, None, {"2xx": RequestCounts(2, 2, 0)})
        assert registry.request_counts("hook") == {
            "2xx": RequestCounts(3, 5, 1),
            "5xx": RequestCounts(1, 3, 0),
            "timeout": RequestCounts(2, 6, 1),
        }
        assert registry.status("hook")[:2] == (5, "HTTP 500")
        registry.remove("hook")
        assert registry.request_counts("hook") == {}
    finally:
        registry.close()

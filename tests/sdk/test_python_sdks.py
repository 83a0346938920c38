"""The official Python clients, unmodified, against a real server: events arrive intact."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError

from tests.conftest import Server

WHEN = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


def _send_all(client: Any) -> None:
    client.identify("user-1", {"email": "ann@example.com", "plan": "pro"}, timestamp=WHEN)
    client.track("user-1", "Order Completed", {"revenue": 42.5, "products": [{"sku": "a-1"}]}, timestamp=WHEN)
    client.page("user-1", "Docs", "Install", {"path": "/install"})
    client.screen("user-1", "App", "Home", {"tab": 1})
    client.group("user-1", "acme", {"name": "Acme Inc", "employees": 50})
    client.alias("anon-7", "user-1")


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check(events: list[dict[str, Any]], library: str) -> None:
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"identify", "track", "page", "screen", "group", "alias"}
    identify = by_type["identify"]
    # rudder-sdk-python sends identify traits in context.traits; both are stored as sent.
    traits = identify.get("traits") or identify["context"]["traits"]
    assert traits == {"email": "ann@example.com", "plan": "pro"}
    track = by_type["track"]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"revenue": 42.5, "products": [{"sku": "a-1"}]}
    assert track["originalTimestamp"].startswith("2024-05-01T12:00:00.123")
    # Segment's skew correction: timestamp = receivedAt - (sentAt - originalTimestamp). The
    # SDK's clock is this machine's, so it moves the time the SDK gave by the transit only.
    moved = _instant(track["timestamp"]) - _instant(track["originalTimestamp"])
    transit = _instant(track["receivedAt"]) - _instant(track["sentAt"])
    assert abs(moved - transit) <= dt.timedelta(milliseconds=1)
    assert dt.timedelta(0) <= moved < dt.timedelta(seconds=30)
    assert by_type["page"]["name"] == "Install" and by_type["page"]["category"] == "Docs"
    assert by_type["screen"]["name"] == "Home"
    assert by_type["group"]["groupId"] == "acme" and by_type["group"]["traits"]["employees"] == 50
    assert by_type["alias"]["previousId"] == "anon-7" and by_type["alias"]["userId"] == "user-1"
    for event in events:
        assert event["userId"] == "user-1"
        assert event["context"]["library"]["name"] == library
        assert "writeKey" not in event
        assert event["source"]["route"] == "/v1/batch"
        assert event["receivedAt"] and event["sentAt"]


@pytest.mark.parametrize(
    ("client_class", "gzip"),
    [(SegmentClient, False), (SegmentClient, True), (RudderClient, True)],
    ids=["segment-plain", "segment-gzip", "rudder-gzip-basic-auth"],
)
def test_official_python_clients(server: Server, client_class: Any, gzip: bool) -> None:
    # segment-analytics-python sends the key in the body; rudder-sdk-python as Basic auth.
    errors: list[Exception] = []
    client = client_class(
        server.write_key,
        host=server.url,
        gzip=gzip,
        max_retries=0,
        on_error=lambda e, batch: errors.append(e),
    )
    _send_all(client)
    client.shutdown()
    assert errors == []
    events = server.events()
    assert len(events) == 6
    _check(events, "analytics-python")
    if client_class is RudderClient:
        assert all(e["channel"] == "server" for e in events)


def test_segment_analytics_python_sees_a_bad_key_as_an_error(server: Server) -> None:
    client = SegmentClient("not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(APIError) as caught:
        client.track("user-1", "Clicked")
    assert caught.value.status == 401
    assert caught.value.code == "invalid_write_key"
    assert server.events() == []

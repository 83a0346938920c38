"""All four wire formats into one store: one canonical log, each event tagged with its way in."""

from __future__ import annotations

import httpx

from tests.conftest import Server


def test_the_four_formats_land_side_by_side_in_canonical_form(server: Server) -> None:
    url, key = server.url, server.write_key
    sent = [
        httpx.post(f"{url}/v1/track", json={"userId": "ann", "event": "Signed Up"}, auth=(key, "")),
        httpx.post(
            f"{url}/web/projects/{key}/batch",
            json={
                "email": "ann@example.com",
                "events": [{"type": "track", "event": "Viewed Pricing", "message_id": "k-1"}],
            },
        ),
        httpx.post(
            f"{url}/track/v2/projects/{key}/customers/events",
            json={
                "customer_ids": {"registered": "ann"},
                "event_type": "purchase",
                "properties": {"total": 9},
            },
            headers={"Authorization": f"Token {key}"},
        ),
        httpx.post(
            f"{url}/analytics/v1/track",
            json={"userId": "ann", "event": "Opened App", "messageId": "v-1", "properties": {}},
            headers={"Authorization": f"Basic {key}"},
        ),
    ]
    assert [r.status_code for r in sent] == [200, 200, 200, 200]
    events = server.events(type="track")
    assert [(e["source"]["format"], e["event"]) for e in events] == [
        ("segment", "Signed Up"),
        ("koala", "Viewed Pricing"),
        ("bloomreach", "purchase"),
        ("vitally", "Opened App"),
    ]
    assert [e["source"]["route"] for e in events] == [
        "/v1/track",
        "/web/projects/{key}/batch",
        "/track/v2/projects/{projectToken}/customers/events",
        "/analytics/v1/track",
    ]
    for event in events:
        # The canonical envelope is the same whatever came in; the key is never stored.
        assert {"type", "messageId", "timestamp", "receivedAt", "version", "source"} <= set(event)
        assert key not in str(event)

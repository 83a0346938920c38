"""The official Node.js SDK (@segment/analytics-node, pinned in tests/js) against a real trackyard.

tests/js/node_send.mjs sends a fixed set of calls and prints what it sent; here we check that
trackyard stored every one of them intact. Dependencies: scripts/install-test-deps.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.sdk._node import run_node_script

pytestmark = pytest.mark.node


def run_node_send(server: Any, **overrides: Any) -> dict[str, Any]:
    config = {"host": server.url, "writeKey": server.write_key, "runId": uuid.uuid4().hex[:10], **overrides}
    return run_node_script("node_send.mjs", config, package="@segment/analytics-node")


def same_instant(a: str, b: str) -> bool:
    # Compare as instants: the server may re-render "...Z" as "+00:00".
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def stored_for(server: Any, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Wait for this run's events (the server may hold others) and index them by messageId."""
    ids = {c["messageId"] for c in summary["calls"]}
    before = len([e for e in server.events() if e["messageId"] not in ids])
    events = server.wait_for_events(before + len(ids))
    mine = {e["messageId"]: e for e in events if e["messageId"] in ids}
    assert set(mine) == ids, f"missing messageIds: {ids - set(mine)}"
    return mine


def test_node_sdk_calls_arrive_intact(server: Any) -> None:
    summary = run_node_send(server)
    assert summary["errors"] == []
    # flushAt defaults to the number of calls: everything went in one /v1/batch request.
    assert [(r["status"], r["url"]) for r in summary["responses"]] == [(200, f"{server.url}/v1/batch")]

    stored = stored_for(server, summary)
    user, anon, run = summary["userId"], summary["anonymousId"], summary["runId"]
    for call in summary["calls"]:
        mid, sent, method = call["messageId"], call["sent"], call["method"]
        event = stored[mid]
        assert mid.startswith("node-next-"), mid
        assert event["type"] == sent["type"] == method
        assert event.get("userId") == sent.get("userId")
        assert event.get("anonymousId") == sent.get("anonymousId")
        for key in ("event", "name", "properties", "traits", "groupId", "previousId"):
            if key in sent:
                assert event[key] == sent[key], (method, key)
        assert event["context"]["library"]["name"] == "@segment/analytics-node"
        assert "writeKey" not in event
        assert event["receivedAt"]
        assert event["sentAt"]
        assert same_instant(event["originalTimestamp"], call["timestamp"])
        assert event["source"]["format"] == "segment"
        assert event["source"]["route"] == "/v1/batch"

    # Spot-check literal values too, so a bug shared by sender and checker can't hide.
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in stored.values():
        by_type.setdefault(e["type"], []).append(e)
    assert sorted(by_type) == ["alias", "group", "identify", "page", "screen", "track"]
    (identify,) = by_type["identify"]
    assert identify["userId"] == user and identify["traits"]["email"] == "ada@example.com"
    order = next(e for e in by_type["track"] if e["event"] == "Order Completed")
    assert order["properties"] == {
        "order_id": f"o-{run}",
        "revenue": 42.5,
        "currency": "EUR",
        "items": [{"sku": "a1", "qty": 2}],
    }
    signup = next(e for e in by_type["track"] if e["event"] == "Signup Started")
    assert signup["anonymousId"] == anon and not signup.get("userId")
    assert signup["properties"] == {"nested": {"deep": True}, "n": None}
    (group,) = by_type["group"]
    assert group["groupId"] == f"g-{run}" and group["traits"] == {"name": "Acme", "employees": 12}
    (alias,) = by_type["alias"]
    assert alias["userId"] == user and alias["previousId"] == anon
    (page,) = by_type["page"]
    # The SDK moves page category into properties, as the Spec says.
    assert page["name"] == "Install"
    assert page["properties"] == {"path": "/docs/install", "category": "Docs"}
    (screen,) = by_type["screen"]
    assert screen["name"] == "Settings" and screen["properties"]["tab"] == "privacy"


def test_node_sdk_small_batches(server: Any) -> None:
    # flushAt=2 splits the 7 calls over several /v1/batch requests; none may be lost or doubled.
    summary = run_node_send(server, flushAt=2)
    assert summary["errors"] == []
    assert len(summary["responses"]) >= 4
    assert all(r["status"] == 200 for r in summary["responses"])
    stored = stored_for(server, summary)
    ids = [e["messageId"] for e in server.events()]
    assert all(ids.count(mid) == 1 for mid in stored)


def test_node_sdk_burst_with_default_settings_gets_no_429(server: Any) -> None:
    """2,000 calls at once go out as about 134 concurrent batches of 15: an ordinary burst,
    which the bound on what is in flight (bytes, not requests) must let through."""
    config = {"host": server.url, "writeKey": server.write_key, "count": 2000}
    summary = run_node_script("node_burst.mjs", config, package="@segment/analytics-node", timeout=120)
    assert summary["errors"] == []
    assert set(summary["statuses"]) == {"200"}, summary["statuses"]
    assert summary["statuses"]["200"] >= 2000 // 15
    assert len(server.wait_for_events(2000, timeout=30)) == 2000

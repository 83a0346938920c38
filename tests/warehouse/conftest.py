"""Fixtures for warehouse tests: a PostgreSQL database of its own per test, and a real event set.

PostgreSQL is the server on this machine (127.0.0.1:5432, trust auth); each test creates a
database and drops it afterwards. Without a server the tests skip, and under CI they fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.pg_databases import pg_dsn  # noqa: F401  (the fixture, for the warehouse tests)
from trackyard.warehouse._backend import Backend

TS = "2024-03-01T10:00:00.000Z"


def segment_batch() -> list[dict[str, Any]]:
    """All six Segment calls, nested context, arrays, odd event names, a type conflict and a widening."""
    context = {
        "ip": "203.0.113.7",
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "app": {"version": "1.2.3"},
        "userAgent": "Mozilla/5.0",
        "field": {"nestedA": {"nestedB": "deep"}},
    }
    base = {"context": context, "timestamp": TS}
    return [
        {
            **base,
            "type": "identify",
            "messageId": "s-identify-1",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {
                "email": "ann@example.com",
                "name": "Ann",
                "plan": "pro",
                "address": {"street": "1 Main St", "city": "Springfield"},
                "tags": ["a", "b"],
            },
        },
        {
            **base,
            "type": "identify",
            "messageId": "s-identify-2",
            "userId": "u1",
            "traits": {"plan": "team", "logins": 3},
        },
        {
            **base,
            "type": "identify",
            "messageId": "s-identify-3",
            "userId": "u2",
            "traits": {"email": "bo@example.com"},
        },
        {
            **base,
            "type": "track",
            "messageId": "s-track-1",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {
                "revenue": 10,
                "currency": "EUR",
                "products": [{"sku": "A-1", "qty": 2}],
                "product_id": {"sku": "X"},
                "coupon": True,
            },
        },
        {
            **base,
            "type": "track",
            "messageId": "s-track-2",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"revenue": 12.5, "currency": "EUR", "coupon": "SPRING", "id": "clash"},
        },
        {
            **base,
            "type": "track",
            "messageId": "s-track-3",
            "userId": "u2",
            "event": "Order Completed",
            "properties": {"revenue": 7, "currency": 978, "coupon": False},
        },
        {
            **base,
            "type": "track",
            "messageId": "s-track-4",
            "anonymousId": "a9",
            "event": "$pageview",
            "properties": {"path": "/"},
        },
        {**base, "type": "track", "messageId": "s-track-5", "userId": "u2", "event": "2FA Enabled"},
        {**base, "type": "track", "messageId": "s-track-6", "userId": "u2", "event": "users"},
        {**base, "type": "track", "messageId": "s-track-7", "userId": "u2", "event": "•¶§"},
        {
            **base,
            "type": "page",
            "messageId": "s-page-1",
            "userId": "u1",
            "name": "Home",
            "properties": {"path": "/", "url": "https://shop.example/", "title": "Shop", "referrer": ""},
        },
        {
            **base,
            "type": "screen",
            "messageId": "s-screen-1",
            "userId": "u1",
            "name": "Basket",
            "properties": {"items": 3},
        },
        {
            **base,
            "type": "group",
            "messageId": "s-group-1",
            "userId": "u1",
            "groupId": "g1",
            "traits": {"name": "Initech", "employees": 50},
        },
        {
            **base,
            "type": "group",
            "messageId": "s-group-2",
            "userId": "u2",
            "groupId": "g1",
            "traits": {"plan": "enterprise"},
        },
        {**base, "type": "alias", "messageId": "s-alias-1", "userId": "u1", "previousId": "a1"},
    ]


def send_event_set(server: Server) -> int:
    """Send the event set in all four wire formats to a real server; return how many events it stored."""
    key = server.write_key
    ok = {200}
    r = httpx.post(f"{server.url}/v1/batch", json={"batch": segment_batch()}, auth=(key, ""), timeout=30)
    assert r.status_code in ok, r.text
    koala = {
        "email": "kay@example.com",
        "events": [
            {
                "type": "track",
                "event": "Viewed Pricing",
                "message_id": "k-track-1",
                "properties": {"plan": "pro", "seats": 5},
                "sent_at": TS,
            },
        ],
        "traits": {"company": "Koala Co"},
    }
    r = httpx.post(
        f"{server.url}/web/projects/{key}/batch",
        content=json.dumps(koala),
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code in ok, r.text
    bloomreach = {
        "customer_ids": {"registered": "br-1"},
        "event_type": "purchase",
        "properties": {"total_price": 19.9, "items": ["x", "y"]},
    }
    r = httpx.post(
        f"{server.url}/track/v2/projects/{key}/customers/events",
        content=json.dumps(bloomreach),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code in ok, r.text
    vitally = {
        "userId": "v-1",
        "event": "Clicked",
        "properties": {"button": "save"},
        "messageId": "v-m-1",
        "timestamp": TS,
    }
    r = httpx.post(
        f"{server.url}/analytics/v1/track",
        content=json.dumps(vitally),
        timeout=30,
        headers={"Authorization": f"Basic {key}", "Content-Type": "application/json"},
    )
    assert r.status_code in ok, r.text
    return len(server.events())


@pytest.fixture(scope="module")
def event_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose log holds the event set, with no loader of its own (the tests load it)."""
    srv = start_server(tmp_path_factory.mktemp("wh") / "data", "--no-warehouse")
    srv.stored = send_event_set(srv)  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def plain(value: Any) -> Any:
    """A warehouse value in a form both backends' drivers agree on."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | Decimal):
        return str(value)
    return value


def dump(backend: Backend) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows without uuid_ts (the load time), in a fixed order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, columns in sorted(backend.schema().items()):
        names = [c for c in columns if c != "uuid_ts"]
        cols = ", ".join(f'"{c}"' for c in names)
        _, rows = backend.query(f'SELECT {cols} FROM "{table}"')
        out[table] = sorted((tuple(plain(v) for v in row) for row in rows), key=repr)
    return out

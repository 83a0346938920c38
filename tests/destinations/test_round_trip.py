"""Any of the four formats in, any out: events sent to trackyard A in format X, delivered by A's
destination of kind Y to trackyard B, arrive in B with the same type, ids, event, properties
and traits wherever Y carries them, and once however often they are delivered.

One A and one B serve every pair: each destination takes one of A's sources (``--source``)
and sends with a key of its own at B, so B's events of source ``X-Y`` are that pair's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import Server, cli
from tests.destinations.conftest import poll

FORMATS = ("segment", "koala", "bloomreach", "vitally")
#: X == Y for all four, segment to each vendor, each vendor to segment.
PAIRS = (
    [(x, x) for x in FORMATS] + [("segment", y) for y in FORMATS[1:]] + [(x, "segment") for x in FORMATS[1:]]
)
_FAST = {"TRACKYARD_DESTINATION_BACKOFF_SECONDS": "0.01", "TRACKYARD_DESTINATION_BACKOFF_CAP_SECONDS": "0.05"}
_FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "groupId",
    "event",
    "properties",
    "traits",
    "messageId",
    "timestamp",
)
_ACCOUNT = [{"id": "acct-1", "type": "vitally_account_id", "collection": "accounts", "encoding": "none"}]

SEGMENT: list[dict[str, Any]] = [
    {"type": "track", "userId": "ada@example.com", "anonymousId": "anon-1", "event": "Order Completed",
     "properties": {"n": 0, "revenue": 12.5, "items": [1, 2]}, "timestamp": "2026-01-02T03:04:05.678Z"},
    {"type": "identify", "userId": "ada@example.com", "anonymousId": "anon-1",
     "traits": {"n": 1, "email": "ada@example.com", "plan": "pro"}, "context": {"externalIds": _ACCOUNT}},
    {"type": "identify", "userId": "bob@example.com", "traits": {"n": 2}},
    {"type": "page", "userId": "ada@example.com", "anonymousId": "anon-1", "name": "Pricing",
     "properties": {"n": 3, "path": "/pricing"}},
    {"type": "group", "userId": "ada@example.com", "groupId": "acct-1", "traits": {"n": 4, "name": "Acme"}},
    {"type": "screen", "userId": "ada@example.com", "name": "Home", "properties": {"n": 5}},
    {"type": "alias", "userId": "ada@example.com", "previousId": "anon-1"},
    {"type": "track", "anonymousId": "anon-2", "event": "Viewed", "properties": {"n": 7}},
]  # fmt: skip
KOALA_PERSON = {
    "profile_id": "kp-1",
    "email": "kim@example.com",
    "events": [
        {"type": "track", "event": "Signed Up", "properties": {"n": 100}, "message_id": "k-1",
         "sent_at": "2026-01-01T00:00:00.000Z"},
    ],
    "identifies": [{"type": "identify", "traits": {"n": 101, "plan": "pro"}, "message_id": "k-2"}],
    "page_views": [{"type": "page", "name": "Docs", "properties": {"n": 102}}],  # no message_id
}  # fmt: skip
KOALA_ACCOUNT = {
    "account_id": "ka-1",
    "identifies": [{"type": "identify", "traits": {"n": 103, "name": "Kacme"}, "message_id": "k-4"}],
}
BLOOMREACH = [
    {"name": "customers", "data": {"customer_ids": {"registered": "bea@example.com", "cookie": "bc-1"},
                                   "properties": {"n": 200, "plan": "pro"}, "timestamp": 1767225600}},
    {"name": "customers/events", "data": {"customer_ids": {"registered": "bea@example.com"},
                                          "event_type": "purchase", "properties": {"n": 201, "total": 9.5},
                                          "timestamp": 1767225601.5}},
]  # fmt: skip
VITALLY = [
    {"type": "user", "userId": "vu-1", "accountId": "va-1", "traits": {"n": 300, "name": "Vic"},
     "messageId": "v-1", "timestamp": "2026-01-01T00:00:00Z"},
    {"type": "account", "accountId": "va-1", "traits": {"n": 301, "name": "Vacme"}, "messageId": "v-2"},
    {"type": "track", "userId": "vu-1", "event": "Logged In", "properties": {"n": 302}, "messageId": "v-3"},
]  # fmt: skip


def _send(a: Server, keys: dict[str, str]) -> None:
    segment = [{**e, "messageId": f"seg-{i}"} for i, e in enumerate(SEGMENT)]
    sent = [
        httpx.post(f"{a.url}/v1/batch", json={"batch": segment}, auth=(keys["segment"], "")),
        httpx.post(f"{a.url}/web/projects/{keys['koala']}/batch", json=KOALA_PERSON),
        httpx.post(f"{a.url}/web/projects/{keys['koala']}/accounts/batch", json=KOALA_ACCOUNT),
        httpx.post(
            f"{a.url}/track/v2/projects/{keys['bloomreach']}/batch",
            json={"commands": BLOOMREACH},
            headers={"Authorization": f"Token {keys['bloomreach']}"},
        ),
        httpx.post(
            f"{a.url}/analytics/v1/batch", json=VITALLY, headers={"Authorization": f"Basic {keys['vitally']}"}
        ),
    ]
    for response in sent:
        assert response.status_code == 200, response.text
        assert '"success":false' not in response.text.replace(" ", "")


def expected(y: str, native: bool, a: dict[str, Any]) -> dict[str, Any] | None:
    """What of A's event ``a`` B stores when it goes through kind ``y``; ``None``: skipped."""
    full = {key: a.get(key) for key in _FIELDS}
    if y == "segment" and not (a.get("userId") or a.get("anonymousId")):
        return None  # a Koala or Vitally account's event: the Segment API needs a user's id
    if y == "segment" or native:
        # segment: B corrects the time again by the batch's sentAt (the transit time is added);
        # a vendor request with no time of its own: B's time is its own receipt.
        if y == "segment" or "originalTimestamp" not in a:
            del full["timestamp"]
        return full
    kind = a["type"]
    only = {key: None for key in _FIELDS} | {"messageId": a["messageId"], "timestamp": a["timestamp"]}
    if y == "koala":
        if kind == "alias":
            return None
        if kind == "group":
            return only | {"type": "group", "groupId": a["groupId"], "traits": a["traits"]}
        return full | {"type": "page" if kind == "screen" else kind}
    if y == "bloomreach":
        if kind in ("alias", "group"):
            return None
        ids = {"userId": a.get("userId"), "anonymousId": a.get("anonymousId"), "messageId": "derived"}
        if kind == "identify":
            return only | ids | {"type": "identify", "traits": a["traits"]}
        return only | ids | {"type": "track", "event": a.get("event") or kind, "properties": a["properties"]}
    assert y == "vitally"
    scoped = {"messageId": f"{_VITALLY_TYPES[kind]}:{a['messageId']}"} if kind in _VITALLY_TYPES else {}
    if kind == "identify" and (a.get("context") or {}).get("externalIds"):
        return only | scoped | {"type": "identify", "userId": a["userId"], "traits": a["traits"]}
    if kind == "group":
        return only | scoped | {"type": "group", "groupId": a["groupId"], "traits": a["traits"]}
    if kind == "track" and a.get("userId"):
        track = {"userId": a["userId"], "event": a["event"], "properties": a["properties"]}
        return only | scoped | {"type": "track", **track}
    return None  # page, screen, alias; a user with no account; a track with no userId


#: The Vitally message type of a canonical type: a trackyard receiver scopes messageIds by it.
_VITALLY_TYPES = {"identify": "user", "group": "account", "track": "track"}


def _key(event: dict[str, Any]) -> Any:
    values = event.get("properties") or event.get("traits") or {}
    return values.get("n", event["messageId"])


def _projection(event: dict[str, Any], fields: Iterator[str]) -> dict[str, Any]:
    return {key: event.get(key) for key in fields}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("round-trip")
    a_dir, b_dir = root / "a", root / "b"
    for x, y in PAIRS:
        cli("sources", "add", f"{x}-{y}", "--write-key", f"key-{x}-{y}", "--secret", f"secret-{x}-{y}",
            "--data-dir", str(b_dir))  # fmt: skip
    b = Server(b_dir).start()
    keys = {x: cli("sources", "add", x, "--data-dir", str(a_dir)).strip() for x in FORMATS}
    for x, y in PAIRS:
        secret = ["--secret", f"secret-{x}-{y}"] if y == "bloomreach" else []
        cli("destinations", "add", f"{x}-{y}", "--format", y, "--url", b.url, "--key", f"key-{x}-{y}",
            *secret, "--source", x, "--data-dir", str(a_dir))  # fmt: skip
    a = Server(a_dir, env=_FAST).start()
    try:
        _send(a, keys)
        poll(lambda: all(row["lag"] == 0 for row in _destinations(a)), timeout=90)
        yield a, b
    finally:
        a.stop()
        b.stop()


def _destinations(a: Server) -> list[dict[str, Any]]:
    out = cli("destinations", "list", "--json", "--data-dir", str(a.data_dir))
    return [msgspec.json.decode(line) for line in out.split("\n") if line]


@pytest.mark.parametrize(("x", "y"), PAIRS, ids=[f"{x}-to-{y}" for x, y in PAIRS])
def test_b_stores_what_a_stored_as_far_as_the_format_carries_it(
    servers: tuple[Server, Server], x: str, y: str
) -> None:
    a, b = servers
    sent = a.events(source=x)
    want = {_key(e): expected(y, x == y, e) for e in sent}
    arrived = {_key(e): e for e in b.events(source=f"{x}-{y}")}
    assert len(arrived) == len(b.events(source=f"{x}-{y}"))  # each event once
    assert sorted(arrived, key=str) == sorted((k for k, v in want.items() if v is not None), key=str)
    for key, event in arrived.items():
        exp = want[key]
        assert exp is not None
        got = _projection(event, iter(exp))
        if exp["messageId"] == "derived":  # Bloomreach: a hash of the command, not A's id
            assert got["messageId"].startswith("br-")
            got["messageId"] = "derived"
        assert got == exp, (x, y, key)

    shown = msgspec.json.decode(
        cli("destinations", "show", f"{x}-{y}", "--json", "--data-dir", str(a.data_dir))
    )
    skipped = [e for e in sent if want[_key(e)] is None]
    assert shown["skipped"] == len(skipped) and shown["dead"] == 0 and shown["delivered"] == len(arrived)
    listed = cli("destinations", "skipped", f"{x}-{y}", "--json", "--data-dir", str(a.data_dir))
    assert sorted(msgspec.json.decode(line)["type"] for line in listed.split("\n") if line) == sorted(
        e["type"] for e in skipped
    )


def test_redelivery_stores_nothing_twice_at_b(servers: tuple[Server, Server]) -> None:
    a, b = servers
    before = {f"{x}-{y}": len(b.events(source=f"{x}-{y}")) for x, y in PAIRS}
    for x, y in PAIRS:
        out = cli("destinations", "replay", f"{x}-{y}", "--after", "0", "--data-dir", str(a.data_dir))
        assert f"{before[f'{x}-{y}']} delivered, 0 dead-lettered" in out, out
    assert {f"{x}-{y}": len(b.events(source=f"{x}-{y}")) for x, y in PAIRS} == before
    # Skips are recorded once an event, however often it is read.
    rows = {row["name"]: row for row in _destinations(a)}
    assert rows["segment-vitally"]["skipped"] == 5  # bob's identify, page, screen, alias, anon-2
    assert rows["segment-vitally"]["skipped_by_reason"]["A page call has no Vitally counterpart."] == 1


def test_bloomreach_private_auth_is_checked_by_the_receiver(servers: tuple[Server, Server]) -> None:
    _, b = servers
    token = "key-bloomreach-bloomreach"
    wrong = base64.b64encode(f"{token}:not-the-secret".encode()).decode()
    response = httpx.post(
        f"{b.url}/track/v2/projects/{token}/batch",
        json={"commands": BLOOMREACH},
        headers={"Authorization": f"Basic {wrong}"},
    )
    assert response.status_code in (401, 403)

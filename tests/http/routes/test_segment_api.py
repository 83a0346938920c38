"""Segment's HTTP Tracking API, rule by rule, against a real server over real HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Server, cli

SINGLE_ROUTES = [
    ("identify", "identify"),
    ("track", "track"),
    ("page", "page"),
    ("screen", "screen"),
    ("group", "group"),
    ("alias", "alias"),
    ("i", "identify"),
    ("t", "track"),
    ("p", "page"),
    ("s", "screen"),
    ("g", "group"),
    ("a", "alias"),
]


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def call(kind: str, user: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"userId": user, **extra}
    if kind == "track":
        body.setdefault("event", "Clicked")
    if kind == "group":
        body.setdefault("groupId", "acme")
    if kind == "alias":
        body.setdefault("previousId", "anon-1")
    return body


def post(server: Server, path: str, body: Any, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}{path}",
        content=content,
        auth=(server.write_key, "") if auth else None,
        timeout=30,
        **kwargs,
    )


def mine(server: Server, user: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("userId") == user]


def exact_json(size: int, user: str, kind: str = "track") -> bytes:
    """A valid event of exactly ``size`` bytes of JSON."""
    base = json.dumps({**call(kind, user), "properties": {"pad": ""}}, separators=(",", ":")).encode()
    padded = base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')
    assert len(padded) == size
    return padded


# -- routes, success answer, auth ----------------------------------------------------------


@pytest.mark.parametrize(("path", "kind"), SINGLE_ROUTES)
def test_every_single_route_stores_its_type(shared_server: Server, path: str, kind: str) -> None:
    user = uid()
    response = post(shared_server, f"/v1/{path}", call(kind, user))
    assert response.status_code == 200
    assert response.content == b'{"success": true}'
    (event,) = mine(shared_server, user)
    assert event["type"] == kind
    assert event["source"] == {"id": 1, "name": "test", "format": "segment", "route": f"/v1/{path}"}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import"])
def test_every_batch_route_stores_the_batch(shared_server: Server, path: str) -> None:
    user = uid()
    items = [{"type": "identify", "userId": user}, {"type": "track", "userId": user, "event": "E"}]
    response = post(shared_server, path, {"batch": items, "sentAt": "2024-01-01T00:00:00Z"})
    assert response.content == b'{"success": true}'
    events = mine(shared_server, user)
    assert [(e["type"], e["source"]["route"]) for e in events] == [("identify", path), ("track", path)]
    # Browser and mobile routes are client-side: the caller's address is recorded.
    assert all(("ip" in e.get("context", {})) == (path != "/v1/batch") for e in events)


def test_rudderstack_beacon_route_takes_the_key_from_the_query(shared_server: Server) -> None:
    user = uid()
    body = json.dumps({"batch": [{"type": "page", "anonymousId": user, "name": "Home"}], "sentAt": None})
    response = httpx.post(
        f"{shared_server.url}/beacon/v1/batch",
        params={"writeKey": shared_server.write_key},
        content=body,
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    (event,) = [e for e in shared_server.events() if e.get("anonymousId") == user]
    assert event["source"]["route"] == "/beacon/v1/batch" and event["name"] == "Home"


def test_the_path_sets_the_type(shared_server: Server) -> None:
    user = uid()
    assert post(shared_server, "/v1/identify", {"type": "track", "userId": user}).status_code == 200
    assert mine(shared_server, user)[0]["type"] == "identify"


@pytest.mark.parametrize("how", ["body", "basic", "basic-no-colon", "batch-envelope"])
def test_write_key_from_body_or_basic_auth(shared_server: Server, how: str) -> None:
    user = uid()
    key = shared_server.write_key
    headers: dict[str, str] = {}
    body: dict[str, Any] = call("track", user)
    path = "/v1/track"
    if how == "body":
        body["writeKey"] = key
    elif how == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    elif how == "basic-no-colon":
        headers["Authorization"] = "Basic " + base64.b64encode(key.encode()).decode()
    else:
        body, path = {"writeKey": key, "batch": [{**body, "type": "track"}]}, "/v1/batch"
    assert post(shared_server, path, body, auth=False, headers=headers).status_code == 200
    (event,) = mine(shared_server, user)
    assert "writeKey" not in event
    assert key not in json.dumps(event)


def test_missing_and_unknown_keys_get_401_with_code_and_message(shared_server: Server) -> None:
    for body, auth in [(call("track", "x"), False), ({**call("track", "x"), "writeKey": "nope"}, False)]:
        response = post(shared_server, "/v1/track", body, auth=auth)
        assert response.status_code == 401
        payload = response.json()
        assert payload["success"] is False
        assert payload["code"] == "invalid_write_key"
        assert "write key" in payload["message"].lower()
    assert "nope" not in response.text


def test_a_disabled_source_gets_401_until_enabled(server: Server) -> None:
    data = str(server.data_dir)
    cli("sources", "disable", "test", "--data-dir", data)
    response = post(server, "/v1/track", call("track", "u1"))
    assert response.status_code == 401
    assert "disabled" in response.json()["message"]
    cli("sources", "enable", "test", "--data-dir", data)
    assert post(server, "/v1/track", call("track", "u1")).status_code == 200


def test_a_rotated_key_stops_working_at_once(server: Server) -> None:
    new_key = cli("sources", "rotate", "test", "--data-dir", str(server.data_dir)).strip()
    assert post(server, "/v1/track", call("track", "u1")).status_code == 401
    server.write_key = new_key
    assert post(server, "/v1/track", call("track", "u1")).status_code == 200


def test_an_item_with_another_sources_key_is_rejected(shared_server: Server) -> None:
    user = uid()
    batch = {"batch": [{**call("track", user), "type": "track", "writeKey": "other"}]}
    response = post(shared_server, "/v1/batch", batch)
    assert response.json()["rejected"][0]["code"] == "write_key_mismatch"
    assert mine(shared_server, user) == []


# -- bodies: content type, gzip, chunked, limits ---------------------------------------------


def test_json_is_read_whatever_the_content_type(shared_server: Server) -> None:
    user = uid()
    response = post(shared_server, "/v1/t", call("track", user), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert len(mine(shared_server, user)) == 1


def test_gzip_and_chunked_bodies(shared_server: Server) -> None:
    user = uid()
    batch = json.dumps({"batch": [{**call("track", user), "type": "track"}] * 3}).encode()
    # Three events with no messageId: three events, each given its own id.
    assert (
        post(
            shared_server, "/v1/batch", gzip.compress(batch), headers={"Content-Encoding": "gzip"}
        ).status_code
        == 200
    )

    def chunks() -> Iterator[bytes]:
        body = json.dumps(call("track", user, event="Chunked")).encode()
        yield from (body[i : i + 7] for i in range(0, len(body), 7))

    response = httpx.post(
        f"{shared_server.url}/v1/track", content=chunks(), auth=(shared_server.write_key, "")
    )
    assert response.status_code == 200
    events = mine(shared_server, user)
    assert len(events) == 4 and len({e["messageId"] for e in events}) == 4
    assert events[-1]["event"] == "Chunked"


def test_a_gzip_bomb_is_refused_without_inflating_it(shared_server: Server) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (200 * 1024 * 1024) + b"]}")
    assert len(bomb) < 300_000
    response = post(shared_server, "/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"


def test_truncated_gzip_is_a_clear_400(shared_server: Server) -> None:
    body = gzip.compress(json.dumps(call("track", "x")).encode())[:-6]
    response = post(shared_server, "/v1/track", body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_gzip"


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"userId": "a"'], ids=repr)
def test_invalid_json_is_400_with_code_and_message(shared_server: Server, body: bytes) -> None:
    response = post(shared_server, "/v1/track", body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["message"].startswith("The body is not valid JSON")


def test_single_event_limit_is_32_kib_exactly(shared_server: Server) -> None:
    user = uid()
    assert post(shared_server, "/v1/track", exact_json(32 * 1024, user)).status_code == 200
    response = post(shared_server, "/v1/track", exact_json(32 * 1024 + 1, user))
    assert response.status_code == 400
    assert response.json()["code"] == "event_too_large"
    assert len(mine(shared_server, user)) == 1


def test_gzip_limits_apply_to_the_decoded_json(shared_server: Server) -> None:
    user = uid()
    body = gzip.compress(exact_json(32 * 1024 + 1, user))
    assert len(body) < 1000
    response = post(shared_server, "/v1/track", body, headers={"Content-Encoding": "gzip"})
    assert response.json()["code"] == "event_too_large"


def _batch_of_size(size: int, user: str) -> bytes:
    item = {**call("track", user), "type": "track"}
    items = [item] * 20
    base = json.dumps(
        {"batch": items, "sentAt": "2024-01-01T00:00:00Z", "pad": ""}, separators=(",", ":")
    ).encode()
    return base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')


def test_request_limit_is_500_kib_exactly(shared_server: Server) -> None:
    user = uid()
    assert post(shared_server, "/v1/batch", _batch_of_size(500 * 1024, user)).status_code == 200
    response = post(shared_server, "/v1/batch", _batch_of_size(500 * 1024 + 1, user))
    assert response.status_code == 400
    assert response.json()["code"] == "payload_too_large"
    assert len(mine(shared_server, user)) == 20


def test_an_oversized_event_in_a_batch_is_rejected_alone(shared_server: Server) -> None:
    user = uid()
    # Keep each item's own bytes exact: the "type" key is added inside the padded object.
    ok_bytes = exact_json(32 * 1024 - len(',"type":"track"'), user)[:-1] + b',"type":"track"}'
    big_bytes = exact_json(32 * 1024 + 1 - len(',"type":"track"'), user)[:-1] + b',"type":"track"}'
    assert len(ok_bytes) == 32 * 1024 and len(big_bytes) == 32 * 1024 + 1
    response = post(shared_server, "/v1/batch", b'{"batch":[' + ok_bytes + b"," + big_bytes + b"]}")
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"index": 1, "code": "event_too_large", "message": "The event is larger than 32,768 bytes of JSON."}
    ]
    assert len(mine(shared_server, user)) == 1


def test_batch_of_2500_is_taken_and_2501_refused(shared_server: Server) -> None:
    user = uid()
    items = [{"type": "track", "userId": user, "event": "E"}] * 2500
    assert post(shared_server, "/v1/batch", {"batch": items}).status_code == 200
    response = post(shared_server, "/v1/batch", {"batch": [*items, items[0]]})
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    assert len(mine(shared_server, user)) == 2500


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/track", {"event": "E"}, "no_user_anon_id"),
        ("/v1/track", {"userId": None, "anonymousId": None, "event": "E"}, "no_user_anon_id"),
        ("/v1/track", {"userId": "u"}, "event_not_defined"),
        ("/v1/track", {"userId": "u", "event": 5}, "event_not_string"),
        ("/v1/group", {"userId": "u"}, "group_id_required"),
        ("/v1/alias", {"userId": "u"}, "alias_ids_required"),
        ("/v1/alias", {"previousId": "p", "anonymousId": "a"}, "alias_ids_required"),
        ("/v1/track", {"userId": True, "event": "E"}, "id_not_string"),
        ("/v1/track", {"userId": "u", "event": "E", "properties": [1]}, "properties_not_object"),
        ("/v1/identify", {"userId": "u", "traits": "x"}, "traits_not_object"),
        ("/v1/page", {"userId": "u", "name": 3}, "name_not_string"),
        ("/v1/track", {"userId": "u", "event": "E", "context": 1}, "context_not_object"),
        ("/v1/track", {"userId": "u", "event": "E", "messageId": "m" * 101}, "message_id_too_long"),
        ("/v1/track", {"userId": "u", "event": "E", "timestamp": "yesterday"}, "invalid_timestamp"),
        ("/v1/track", ["not", "an", "object"], "invalid_event"),
    ],
)
def test_a_call_that_breaks_the_spec_is_400_and_kept_in_rejects(
    shared_server: Server, path: str, body: Any, code: str
) -> None:
    marker = uid()
    if isinstance(body, dict):
        body = {**body, "properties": body.get("properties", {"marker": marker})}
    response = post(shared_server, path, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["code"] == code and payload["message"]
    reject = shared_server.rejects()[-1]
    assert reject["code"] == code and reject["route"] == path and reject["index"] is None
    assert reject["payload"] == body


def test_a_rejected_call_is_kept_without_its_write_key(shared_server: Server) -> None:
    key = shared_server.write_key
    body = b'{"writeKey" : "' + key.encode() + b'", "event": "No user", "properties": {"n": 1}}'
    assert post(shared_server, "/v1/track", body, auth=False).status_code == 400
    batch = {"writeKey": key, "batch": [{"type": "track", "userId": "u", "writeKey": "someone-else"}]}
    post(shared_server, "/v1/batch", batch, auth=False)
    single, item = shared_server.rejects()[-2:]
    assert single["payload"] == {"writeKey": "[redacted]", "event": "No user", "properties": {"n": 1}}
    assert item["payload"]["writeKey"] == "[redacted]"
    db = (shared_server.data_dir / "trackyard.db").read_bytes()
    assert key.encode() in db  # the sources table holds it, as it must
    assert b"someone-else" not in db


def test_a_batch_stores_the_valid_and_lists_the_invalid(shared_server: Server) -> None:
    user = uid()
    items = [
        {"type": "track", "userId": user, "event": "Good"},
        {"type": "track", "userId": user},
        {"type": "wave", "userId": user},
        {"type": "identify", "userId": user, "traits": {"plan": "pro"}},
        "not an object",
    ]
    response = post(shared_server, "/v1/batch", {"batch": items})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "event_not_defined"),
        (2, "invalid_type"),
        (4, "invalid_event"),
    ]
    assert [e["type"] for e in mine(shared_server, user)] == ["track", "identify"]
    rejects = {r["index"]: r for r in shared_server.rejects() if r["route"] == "/v1/batch"}
    assert rejects[2]["payload"] == items[2]


def test_numeric_ids_become_strings_and_null_ids_are_absent(shared_server: Server) -> None:
    user_number = int(uuid.uuid4().int % 10**12)
    post(shared_server, "/v1/track", {"userId": user_number, "anonymousId": None, "event": "E"})
    (event,) = mine(shared_server, str(user_number))
    assert event["userId"] == str(user_number)
    assert "anonymousId" not in event


# -- enrichment ----------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def test_clock_skew_is_corrected_with_sent_at(shared_server: Server) -> None:
    user = uid()
    client_now = datetime(2020, 1, 1, tzinfo=UTC)  # the device's clock is years behind
    happened = client_now - timedelta(seconds=30)
    post(shared_server, "/v1/track", call("track", user, timestamp=iso(happened), sentAt=iso(client_now)))
    (event,) = mine(shared_server, user)
    received = datetime.fromisoformat(event["receivedAt"])
    assert event["originalTimestamp"] == iso(happened)
    assert event["sentAt"] == iso(client_now)
    assert datetime.fromisoformat(event["timestamp"]) == received - timedelta(seconds=30)


def test_skew_correction_uses_the_batch_sent_at_and_any_offset(shared_server: Server) -> None:
    user = uid()
    batch = {
        "sentAt": "2020-01-01T02:00:10.5+02:00",
        "batch": [
            {"type": "track", "userId": user, "event": "E", "timestamp": "2020-01-01T00:00:00.000000Z"}
        ],
    }
    post(shared_server, "/v1/batch", batch)
    (event,) = mine(shared_server, user)
    received = datetime.fromisoformat(event["receivedAt"])
    assert datetime.fromisoformat(event["timestamp"]) == received - timedelta(seconds=10.5)
    assert event["sentAt"] == batch["sentAt"]


def test_without_sent_at_the_timestamp_is_kept_and_without_timestamp_it_is_received_at(
    shared_server: Server,
) -> None:
    user = uid()
    post(shared_server, "/v1/track", call("track", user, timestamp="2021-06-01T10:00:00.123456789+00:00"))
    post(shared_server, "/v1/track", call("track", user, event="Now"))
    kept, now = mine(shared_server, user)
    assert kept["timestamp"] == "2021-06-01T10:00:00.123Z"
    assert now["timestamp"] == now["receivedAt"] and "originalTimestamp" not in now


def test_one_received_at_per_request_and_envelope_context_merged(shared_server: Server) -> None:
    user = uid()
    batch = {
        "context": {"library": {"name": "lib"}, "locale": "fr"},
        "integrations": {"All": False},
        "batch": [
            {"type": "track", "userId": user, "event": f"E{i}", "context": {"locale": "de"} if i == 0 else {}}
            for i in range(3)
        ],
    }
    post(shared_server, "/v1/batch", batch)
    events = mine(shared_server, user)
    assert len({e["receivedAt"] for e in events}) == 1
    assert events[0]["context"] == {"library": {"name": "lib"}, "locale": "de"}
    assert events[1]["context"] == {"library": {"name": "lib"}, "locale": "fr"}
    assert all(e["integrations"] == {"All": False} for e in events)
    assert all(e["version"] == 2 for e in events)
    assert len({e["messageId"] for e in events}) == 3


def test_context_ip_for_client_side_calls_only(shared_server: Server) -> None:
    user = uid()
    post(shared_server, "/v1/t", call("track", user, event="Browser"))
    post(shared_server, "/v1/track", call("track", user, event="Server"))
    post(shared_server, "/v1/track", call("track", user, event="Direct", context={"direct": True}))
    post(shared_server, "/v1/t", call("track", user, event="Own", context={"ip": "203.0.113.9"}))
    ips = {e["event"]: e.get("context", {}).get("ip") for e in mine(shared_server, user)}
    assert ips == {"Browser": "127.0.0.1", "Server": None, "Direct": "127.0.0.1", "Own": "203.0.113.9"}


def test_unknown_fields_are_kept(shared_server: Server) -> None:
    user = uid()
    post(
        shared_server,
        "/v1/page",
        call("page", user, channel="browser", _metadata={"bundled": []}, category="Docs"),
    )
    (event,) = mine(shared_server, user)
    assert (
        event["channel"] == "browser"
        and event["_metadata"] == {"bundled": []}
        and event["category"] == "Docs"
    )


# -- dedup ---------------------------------------------------------------------------


def test_a_duplicate_message_id_is_stored_once_and_still_answered_200(shared_server: Server) -> None:
    user = uid()
    message = call("track", user, messageId=f"m-{user}")
    assert post(shared_server, "/v1/track", message).status_code == 200
    assert post(shared_server, "/v1/track", {**message, "event": "Retry"}).status_code == 200
    batch = {"batch": [{**message, "type": "track"}, {**message, "type": "track"}]}
    assert post(shared_server, "/v1/batch", batch).json() == {"success": True}
    (event,) = mine(shared_server, user)
    assert event["event"] == "Clicked"


def test_dedup_is_per_source_and_survives_a_restart(server: Server) -> None:
    message = call("track", "u1", messageId="same-id")
    assert post(server, "/v1/track", message).status_code == 200
    other_key = cli("sources", "add", "other", "--data-dir", str(server.data_dir)).strip()
    httpx.post(f"{server.url}/v1/track", json=message, auth=(other_key, "")).raise_for_status()
    server.restart()
    assert post(server, "/v1/track", message).status_code == 200
    events = server.events()
    assert [e["source"]["name"] for e in events] == ["test", "other"]


# -- limits: 429 ---------------------------------------------------------------------


def test_a_source_over_its_rate_gets_429_with_retry_after(server: Server) -> None:
    cli("sources", "limit", "test", "5", "--data-dir", str(server.data_dir))
    items = [{"type": "track", "userId": "u", "event": "E"}] * 5
    assert post(server, "/v1/batch", {"batch": items}).status_code == 200
    response = post(server, "/v1/batch", {"batch": items})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Reset"] == response.headers["Retry-After"]
    assert response.json()["code"] == "rate_limited"
    assert len(server.events()) == 5


# -- CORS ------------------------------------------------------------------------------


def test_cors_preflight_allows_what_browsers_send(shared_server: Server) -> None:
    response = httpx.options(
        f"{shared_server.url}/v1/b",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count,anonymousid",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("authorization", "content-type", "x-retry-count", "anonymousid"))
    assert "POST" in response.headers["access-control-allow-methods"]


def test_every_collection_answer_carries_allow_origin(shared_server: Server) -> None:
    with_origin = post(shared_server, "/v1/t", call("track", "u"), headers={"Origin": "https://a.example"})
    assert with_origin.headers["access-control-allow-origin"] == "https://a.example"
    assert with_origin.headers["access-control-allow-credentials"] == "true"
    refused = post(
        shared_server, "/v1/t", call("track", "u"), auth=False, headers={"Origin": "https://a.example"}
    )
    assert (
        refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://a.example"
    )
    assert post(shared_server, "/v1/t", call("track", "u")).headers["access-control-allow-origin"] == "*"


# -- pixel, metrics, settings, health, unknown routes --------------------------------------


def test_pixel_stores_the_event_and_always_answers_a_gif(shared_server: Server) -> None:
    user = uid()
    data = base64.b64encode(
        json.dumps({"writeKey": shared_server.write_key, "userId": user, "event": "Opened Email"}).encode()
    ).decode()
    response = httpx.get(f"{shared_server.url}/v1/pixel/track", params={"data": data})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    flat = httpx.get(
        f"{shared_server.url}/v1/pixel/page",
        params={"writeKey": shared_server.write_key, "userId": user, "properties.subject": "Hi"},
    )
    assert flat.status_code == 200
    bad = httpx.get(f"{shared_server.url}/v1/pixel/track", params={"data": "%%%"})
    assert bad.status_code == 200 and bad.content.startswith(b"GIF89a")
    events = mine(shared_server, user)
    assert [(e["type"], e.get("event"), e["source"]["route"]) for e in events] == [
        ("track", "Opened Email", "/v1/pixel"),
        ("page", None, "/v1/pixel"),
    ]
    assert events[1]["properties"] == {"subject": "Hi"}


def test_browser_metrics_are_answered_200(shared_server: Server) -> None:
    body = {"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1, "tags": {}}]}
    response = httpx.post(
        f"{shared_server.url}/v1/m", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200 and response.json() == {"success": True}


def test_settings_point_analytics_next_at_this_server(shared_server: Server) -> None:
    response = httpx.get(f"{shared_server.url}/v1/projects/{shared_server.write_key}/settings")
    assert response.status_code == 200
    settings = response.json()
    host = shared_server.url.removeprefix("http://")
    assert settings["integrations"] == {
        "Segment.io": {"apiKey": shared_server.write_key, "apiHost": f"{host}/v1", "protocol": "http"}
    }
    assert settings["metrics"]["sampleRate"] == 0
    unknown = httpx.get(f"{shared_server.url}/v1/projects/nope/settings")
    assert unknown.status_code == 404 and unknown.json()["code"] == "invalid_write_key"


def test_health_and_readiness(shared_server: Server) -> None:
    assert httpx.get(f"{shared_server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{shared_server.url}/readyz").json() == {"status": "ready"}


def test_unknown_routes_get_json_errors(shared_server: Server) -> None:
    missing = httpx.post(f"{shared_server.url}/v2/track", content=b"{}")
    assert missing.status_code == 404 and set(missing.json()) == {"success", "code", "message"}
    wrong_method = httpx.get(f"{shared_server.url}/v1/track")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"

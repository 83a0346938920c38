"""Vitally's HTTPS Analytics API, rule by rule, against a real server over real HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from trackyard.config import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from trackyard.wire import vitally as wire

SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seeds" / "004_a649af010e8904ba.txt"
SUCCESS = b'{"message":"Success."}'
TS = "2018-05-15T12:31:12.123Z"


def seed_batch() -> bytes:
    """The curl example of Vitally's batch page, byte for byte (the page drops its closing quote)."""
    text = SEED.read_text()
    return text[text.index("-d '") + len("-d '") : text.rindex("]") + 1].encode()


def uid() -> str:
    return uuid.uuid4().hex[:12]


def message(kind: str, user: str, **extra: Any) -> dict[str, Any]:
    """A minimal valid message of ``kind`` whose ids all contain ``user``."""
    minimal: dict[str, dict[str, Any]] = {
        "organization": {"organizationId": f"o-{user}"},
        "account": {"accountId": f"a-{user}", "traits": {"name": "Acme"}},
        "user": {"userId": user, "accountId": f"a-{user}", "traits": {}},
        "track": {"userId": user, "event": "Clicked", "properties": {}},
        "unlink": {"userId": user, "accountId": f"a-{user}"},
        "customobjectinstance": {
            "externalId": f"x-{user}",
            "customObjectId": "vehicles",
            "accountId": f"a-{user}",
            "traits": {},
        },
    }
    return {**minimal[kind], "messageId": f"m-{user}", "timestamp": TS, **extra}


def post(server: Server, path: str, body: Any, *, token: str | None = "raw", **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = dict(kwargs.pop("headers", {}))
    if token == "raw":
        headers["Authorization"] = f"Basic {server.write_key}"
    elif token is not None:
        headers["Authorization"] = token
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(
        f"{server.url}/analytics/v1/{path}", content=content, headers=headers, timeout=30, **kwargs
    )


def mine(server: Server, user: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if user in json.dumps(e)]


def my_rejects(server: Server, user: str) -> list[dict[str, Any]]:
    return [r for r in server.rejects() if user in json.dumps(r["payload"])]


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    for word in words:
        assert word in body["message"]
    return body


# -- the documented example, routes, success answer ---------------------------------------------


def test_the_documented_batch_example_is_stored_and_encodes_back_exactly(server: Server) -> None:
    response = post(server, "batch", seed_batch())
    assert response.status_code == 200
    assert response.content == SUCCESS
    events = server.events()
    # The example reuses one messageId for four messages: the dedup key is scoped by type.
    assert [(e["type"], e["context"]["vitally"]["type"]) for e in events] == [
        ("group", "organization"),
        ("group", "account"),
        ("identify", "user"),
        ("track", "track"),
    ]
    assert [wire.encode(e, batched=True) for e in events] == json.loads(seed_batch())
    for event in events:
        assert event["source"] == {
            "id": 1,
            "name": "test",
            "format": "vitally",
            "route": "/analytics/v1/batch",
        }
        assert event["timestamp"] == TS
        assert server.write_key not in json.dumps(event)
    user = events[2]
    assert user["userId"] == "32"
    assert user["context"]["externalIds"] == [
        {"id": "123456", "type": "vitally_account_id", "collection": "accounts", "encoding": "none"},
        {
            "id": "abcdefg",
            "type": "vitally_organization_id",
            "collection": "organizations",
            "encoding": "none",
        },
    ]
    assert events[1]["groupId"] == "123456"
    assert events[1]["context"]["externalIds"][0]["id"] == "abcdefg"


@pytest.mark.parametrize(
    ("kind", "canonical"),
    [
        ("organization", "group"),
        ("account", "group"),
        ("user", "identify"),
        ("track", "track"),
        ("unlink", "identify"),
        ("customobjectinstance", "group"),
    ],
)
def test_every_single_route_stores_its_type(shared_server: Server, kind: str, canonical: str) -> None:
    user = uid()
    sent = message(kind, user)
    response = post(shared_server, kind, sent)
    assert response.status_code == 200
    assert response.content == SUCCESS
    (event,) = mine(shared_server, user)
    assert event["type"] == canonical
    assert event["context"]["vitally"]["type"] == kind
    assert event["messageId"] == f"{kind}:m-{user}"
    assert event["source"]["route"] == f"/analytics/v1/{kind}"
    assert wire.encode(event) == sent


def test_unlink_is_an_identify_that_removes_the_company(shared_server: Server) -> None:
    user = uid()
    assert post(shared_server, "unlink", message("unlink", user)).status_code == 200
    (event,) = mine(shared_server, user)
    assert event["userId"] == user
    assert event["traits"] == {"company": {"id": f"a-{user}", "remove": True}}
    assert "externalIds" not in event["context"]


def test_custom_object_instance_is_a_group_keyed_by_external_id(shared_server: Server) -> None:
    user = uid()
    sent = message("customobjectinstance", user, name="Truck 7")
    assert post(shared_server, "customobjectinstance", sent).status_code == 200
    (event,) = mine(shared_server, user)
    assert event["groupId"] == f"x-{user}"
    assert event["context"]["vitally"]["fields"] == {"customObjectId": "vehicles", "name": "Truck 7"}
    assert event["context"]["externalIds"][0]["id"] == f"a-{user}"


def test_unknown_keys_and_numeric_ids_are_kept(shared_server: Server) -> None:
    user = uid()
    sent = message("user", user, accountId=42, plan={"tier": "gold"}, organizationId=None)
    assert post(shared_server, "user", sent).status_code == 200
    (event,) = mine(shared_server, user)
    assert event["context"]["externalIds"][0]["id"] == "42"
    assert event["context"]["vitally"]["fields"] == {"plan": {"tier": "gold"}, "organizationId": None}
    assert wire.encode(event) == sent


def test_gzip_bodies_are_accepted(shared_server: Server) -> None:
    user = uid()
    body = gzip.compress(json.dumps([{**message("track", user), "type": "track"}]).encode())
    response = post(shared_server, "batch", body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert len(mine(shared_server, user)) == 1


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["raw", "raw-colon", "base64", "base64-colon", "lowercase-scheme"])
def test_the_token_is_the_write_key_raw_or_base64(shared_server: Server, form: str) -> None:
    key = shared_server.write_key
    token = {
        "raw": f"Basic {key}",
        "raw-colon": f"Basic {key}:",
        "base64": "Basic " + base64.b64encode(key.encode()).decode(),
        "base64-colon": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "lowercase-scheme": f"basic {key}",
    }[form]
    user = uid()
    assert post(shared_server, "track", message("track", user), token=token).status_code == 200
    assert len(mine(shared_server, user)) == 1


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (None, "No write key"),
        ("Basic", "No write key"),
        ("Bearer {key}", "No write key"),
        ("Basic nope", "Unknown write key"),
        ("Basic " + base64.b64encode(b"nope:").decode(), "Unknown write key"),
    ],
)
def test_missing_or_wrong_tokens_get_401(shared_server: Server, token: str | None, words: str) -> None:
    user = uid()
    header = None if token is None else token.format(key=shared_server.write_key)
    response = post(shared_server, "track", message("track", user), token=header)
    assert_error(response, 401, "invalid_write_key", words)
    assert set(response.json()) == {"message", "code"}
    assert mine(shared_server, user) == []


def test_a_disabled_source_gets_401_even_with_a_base64_token(server: Server) -> None:
    cli("sources", "disable", "test", "--data-dir", str(server.data_dir))
    token = "Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()
    assert_error(
        post(server, "track", message("track", "u"), token=token), 401, "invalid_write_key", "disabled"
    )


def test_over_the_rate_limit_gets_429_with_retry_after_and_nothing_is_lost(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        cli("sources", "limit", "test", "1", "--data-dir", str(srv.data_dir))
        batch = [{**message("track", f"r{i}"), "type": "track"} for i in range(5)]
        assert post(srv, "batch", batch).status_code == 200
        response = post(srv, "batch", [{**message("track", "late"), "type": "track"}])
        assert_error(response, 429, "rate_limited", "retry")
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["RateLimit-Reset"] == response.headers["Retry-After"]
        assert len(srv.events()) == 5
        assert srv.rejects() == []  # the client retries a 429; it is not a refusal
    finally:
        srv.stop()


# -- messageId, timestamp, dedup --------------------------------------------------------------


def test_a_message_needs_a_message_id_or_a_timestamp(shared_server: Server) -> None:
    user = uid()
    sent = message("track", user)
    del sent["messageId"], sent["timestamp"]
    assert_error(post(shared_server, "track", sent), 400, "missing_field", "messageId", "timestamp")
    (reject,) = my_rejects(shared_server, user)
    assert reject["payload"] == sent
    assert reject["route"] == "/analytics/v1/track"
    assert reject["index"] is None


def test_without_a_message_id_the_hash_of_the_message_dedups(shared_server: Server) -> None:
    user = uid()
    sent = message("user", user)
    del sent["messageId"]
    assert post(shared_server, "user", sent).status_code == 200
    # The same message again, keys reordered and typed, through the batch route: one event.
    again = {"type": "user", **dict(reversed(list(sent.items())))}
    assert post(shared_server, "batch", [again]).status_code == 200
    (event,) = mine(shared_server, user)
    assert event["messageId"].startswith("user:")
    assert event["context"]["vitally"]["hashedMessageId"] is True
    assert wire.encode(event) == sent
    changed = {**sent, "traits": {"plan": "pro"}}
    assert post(shared_server, "user", changed).status_code == 200
    assert len(mine(shared_server, user)) == 2


def test_a_repeated_message_id_is_stored_once_per_type(shared_server: Server) -> None:
    user = uid()
    for _ in range(2):
        assert post(shared_server, "track", message("track", user)).status_code == 200
    assert post(shared_server, "unlink", message("unlink", user)).status_code == 200
    assert sorted(e["context"]["vitally"]["type"] for e in mine(shared_server, user)) == ["track", "unlink"]


def test_without_a_timestamp_the_receive_time_is_the_event_time(shared_server: Server) -> None:
    user = uid()
    sent = message("track", user)
    del sent["timestamp"]
    assert post(shared_server, "track", sent).status_code == 200
    (event,) = mine(shared_server, user)
    assert event["timestamp"] == event["receivedAt"]
    assert "originalTimestamp" not in event
    assert wire.encode(event) == sent


def test_the_timestamp_is_normalised_and_the_original_kept(shared_server: Server) -> None:
    user = uid()
    assert post(
        shared_server, "track", message("track", user, timestamp="2018-05-15T14:31:12+02:00")
    ).is_success
    (event,) = mine(shared_server, user)
    assert event["timestamp"] == "2018-05-15T12:31:12.000Z"
    assert event["originalTimestamp"] == "2018-05-15T14:31:12+02:00"


def test_an_invalid_timestamp_gets_400(shared_server: Server) -> None:
    sent = message("track", uid(), timestamp="yesterday")
    assert_error(post(shared_server, "track", sent), 400, "invalid_timestamp", "timestamp", "ISO-8601")


# -- required fields and types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "drop", "named"),
    [
        ("organization", "organizationId", "organizationId"),
        ("account", "accountId", "accountId"),
        ("user", "userId", "userId"),
        ("user", "traits", "traits"),
        ("user", "accountId", "an accountId or an organizationId"),
        ("track", "event", "event"),
        ("track", "properties", "properties"),
        ("track", "userId", "a userId or an accountId"),
        ("unlink", "userId", "userId"),
        ("unlink", "accountId", "accountId"),
        ("customobjectinstance", "externalId", "externalId"),
        ("customobjectinstance", "customObjectId", "customObjectId"),
        ("customobjectinstance", "traits", "traits"),
        ("customobjectinstance", "accountId", "an accountId or an organizationId"),
    ],
)
def test_required_fields_are_enforced_by_name(
    shared_server: Server, kind: str, drop: str, named: str
) -> None:
    user = uid()
    sent = message(kind, user)
    del sent[drop]
    body = assert_error(
        post(shared_server, kind, sent), 400, "missing_field", f"A {kind} message needs {named}"
    )
    assert set(body) == {"message", "code"}
    (reject,) = my_rejects(shared_server, user)
    assert reject["code"] == "missing_field"
    assert reject["payload"] == sent
    assert mine(shared_server, user) == []


@pytest.mark.parametrize(
    ("kind", "field", "value", "words"),
    [
        ("user", "traits", "vip", "traits must be an object, not a string"),
        ("track", "properties", [1], "properties must be an object, not an array"),
        ("user", "userId", True, "userId must be a string, not a boolean"),
        ("track", "event", 7, "event must be a string, not a number"),
        ("account", "accountId", {"id": 1}, "accountId must be a string, not an object"),
        ("customobjectinstance", "name", 3, "name must be a string"),
    ],
)
def test_wrong_types_get_400(shared_server: Server, kind: str, field: str, value: Any, words: str) -> None:
    user = uid()
    sent = message(kind, user, **{field: value})
    assert_error(post(shared_server, kind, sent), 400, "invalid_field", words)
    assert [r["payload"] for r in my_rejects(shared_server, user)] == [sent]


def test_an_account_without_traits_and_a_track_with_only_an_account_are_valid(shared_server: Server) -> None:
    user = uid()
    account = message("account", user)
    del account["traits"]
    track = message("track", user, accountId=f"a-{user}")
    del track["userId"]
    assert post(
        shared_server, "batch", [{**account, "type": "account"}, {**track, "type": "track"}]
    ).is_success
    assert len(mine(shared_server, user)) == 2


# -- bodies: JSON, shape, batch limits ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        ("batch", b"[{", "invalid_json", "not valid JSON"),
        ("user", b"{nope", "invalid_json", "not valid JSON"),
        ("batch", b'{"batch": []}', "invalid_batch", "must be a JSON array of messages, not an object"),
        ("user", b"[]", "invalid_message", "must be a JSON object, not an array"),
    ],
)
def test_malformed_bodies_get_400_and_are_kept(
    server: Server, path: str, body: bytes, code: str, words: str
) -> None:
    assert_error(post(server, path, body), 400, code, words)
    (reject,) = server.rejects()
    assert reject["code"] == code
    assert reject["route"] == f"/analytics/v1/{path}"


def test_an_unknown_or_missing_batch_type_gets_400(shared_server: Server) -> None:
    user = uid()
    response = post(
        shared_server, "batch", [{**message("track", user), "type": "identify"}, message("user", user)]
    )
    body = assert_error(response, 400, "invalid_batch", "Message 0", "type must be one of", "1 more invalid")
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(0, "invalid_type"), (1, "invalid_type")]
    assert "got nothing" in body["errors"][1]["message"]


def test_one_invalid_message_refuses_the_whole_batch_and_keeps_every_message(shared_server: Server) -> None:
    user = uid()
    good = [{**message("track", user, messageId=f"{user}-{i}"), "type": "track"} for i in range(3)]
    bad = {**message("user", user), "type": "user", "traits": None}
    batch = [good[0], bad, good[1], good[2]]
    body = assert_error(post(shared_server, "batch", batch), 400, "invalid_batch", "Message 1", "traits")
    assert body["errors"] == [
        {
            "index": 1,
            "code": "missing_field",
            "message": "A user message needs traits (an object; {} is allowed).",
        }
    ]
    assert mine(shared_server, user) == []
    rejects = my_rejects(shared_server, user)
    assert [(r["index"], r["code"]) for r in rejects] == [
        (0, "batch_refused"),
        (1, "missing_field"),
        (2, "batch_refused"),
        (3, "batch_refused"),
    ]
    assert [r["payload"] for r in rejects] == batch
    # The fixed batch is then stored in full.
    batch[1] = {**bad, "traits": {}}
    assert post(shared_server, "batch", batch).status_code == 200
    assert len(mine(shared_server, user)) == 4


def test_a_batch_of_100_is_accepted_and_101_refused(server: Server) -> None:
    batch = [{**message("track", f"b{i}"), "type": "track"} for i in range(101)]
    assert post(server, "batch", batch[:100]).content == SUCCESS
    assert len(server.events()) == 100
    over = [{**m, "messageId": f"again-{i}"} for i, m in enumerate(batch)]
    assert_error(post(server, "batch", over), 400, "batch_too_large", "101 messages", "limit is 100")
    assert len(server.events()) == 100
    rejects = server.rejects()
    assert len(rejects) == 101
    assert [r["index"] for r in rejects] == list(range(101))
    assert {r["code"] for r in rejects} == {"batch_too_large"}


def test_an_empty_batch_succeeds(shared_server: Server) -> None:
    assert post(shared_server, "batch", []).content == SUCCESS


# -- sizes ------------------------------------------------------------------------------------


def sized(kind: str, user: str, size: int, **extra: Any) -> bytes:
    """A valid message of exactly ``size`` bytes of JSON."""
    base = json.dumps({**message(kind, user), **extra, "pad": ""}, separators=(",", ":")).encode()
    padded = base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')
    assert len(padded) == size
    return padded


def test_a_single_message_of_exactly_the_limit_is_accepted_and_one_more_byte_refused(server: Server) -> None:
    assert post(server, "track", sized("track", "fits", MAX_EVENT_BYTES)).status_code == 200
    response = post(server, "track", sized("track", "over", MAX_EVENT_BYTES + 1))
    assert_error(response, 400, "event_too_large", f"{MAX_EVENT_BYTES:,} bytes")
    assert [e["userId"] for e in server.events()] == ["fits"]
    (reject,) = server.rejects()
    assert (reject["code"], reject["route"]) == ("event_too_large", "/analytics/v1/track")


def test_a_batch_message_over_the_message_limit_refuses_the_batch(server: Server) -> None:
    fits = sized("track", "fits", MAX_EVENT_BYTES, type="track")
    over = sized("track", "over", MAX_EVENT_BYTES + 1, type="track")
    assert post(server, "batch", b"[" + fits + b"]").status_code == 200
    body = assert_error(post(server, "batch", b"[" + fits + b"," + over + b"]"), 400, "invalid_batch")
    assert body["errors"][0]["code"] == "message_too_large"
    assert [(r["index"], r["code"]) for r in server.rejects()] == [
        (0, "batch_refused"),
        (1, "message_too_large"),
    ]


def batch_of_size(size: int) -> bytes:
    """A valid batch of exactly ``size`` bytes, each message within the message limit."""
    count = size // 30_000 + 1
    per, extra = divmod(size - 2 - (count - 1), count)
    parts = [sized("track", f"s{i}", per + (1 if i < extra else 0), type="track") for i in range(count)]
    body = b"[" + b",".join(parts) + b"]"
    assert len(body) == size
    return body


def test_a_batch_of_exactly_the_request_limit_is_accepted_and_one_more_byte_refused(server: Server) -> None:
    assert post(server, "batch", batch_of_size(MAX_REQUEST_BYTES)).status_code == 200
    stored = len(server.events())
    response = post(server, "batch", batch_of_size(MAX_REQUEST_BYTES + 1))
    assert_error(response, 400, "payload_too_large", f"{MAX_REQUEST_BYTES:,} bytes")
    assert len(server.events()) == stored
    (reject,) = server.rejects()
    assert (reject["code"], reject["route"]) == ("payload_too_large", "/analytics/v1/batch")


def test_events_survive_a_restart(server: Server) -> None:
    assert post(server, "batch", seed_batch()).status_code == 200
    server.restart()
    assert len(server.events()) == 4

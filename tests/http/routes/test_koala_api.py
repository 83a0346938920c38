"""Koala's server-side API, rule by rule, against a real server over real HTTP."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from trackyard.wire import koala as wire

SUCCESS = {"ok": True, "status": "success"}
PROFILE = "/web/projects/{key}/batch"
ACCOUNT = "/web/projects/{key}/accounts/batch"

#: The body Segment's "Koala (Cloud)" track action sends (its "all fields" snapshot, with an email).
SEGMENT_TRACK = {
    "email": "gezohpa@okacege.mr",
    "events": [
        {
            "context": {"testType": "B22nAr"},
            "device_ip": "B22nAr",
            "event": "B22nAr",
            "message_id": "B22nAr",
            "properties": {"testType": "B22nAr"},
            "sent_at": "2060-01-24T01:10:21.230Z",
            "traits": {"testType": "B22nAr"},
            "type": "track",
        }
    ],
    "ip": "B22nAr",
    "traits": {"testType": "B22nAr"},
}


def uid() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def post(
    server: Server, template: str, body: Any, *, key: str | None = None, **kwargs: Any
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    path = template.replace("{key}", server.write_key if key is None else key)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rudderstack/1.0.0",
        **kwargs.pop("headers", {}),
    }
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30, **kwargs)


def mine(server: Server, profile_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if profile_id in (e.get("anonymousId"), e.get("groupId"))]


def assert_refused(response: httpx.Response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "message"}
    assert body["code"] == code
    assert words in body["message"]


def last_reject(server: Server) -> dict[str, Any]:
    return server.rejects()[-1]


# -- routes, success, auth ---------------------------------------------------------------------


def test_a_profile_batch_is_stored_as_canonical_events(shared_server: Server) -> None:
    person = uid()
    body = {
        "profile_id": person,
        "email": f"{person}@example.com",
        "events": [
            {"type": "track", "event": "Created Account", "message_id": uid(), "properties": {"a": 1}}
        ],
        "identifies": [{"type": "identify", "traits": {"vip": True}}],
        "page_views": [{"type": "page", "name": "Pricing", "properties": {"url": "https://x.io/p"}}],
    }
    response = post(shared_server, PROFILE, body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    track, identify, page = mine(shared_server, person)
    assert [track["type"], identify["type"], page["type"]] == ["track", "identify", "page"]
    assert track["event"] == "Created Account" and page["name"] == "Pricing"
    assert identify["userId"] == f"{person}@example.com"
    assert track["source"] == {"id": 1, "name": "test", "format": "koala", "route": PROFILE}
    assert shared_server.write_key not in json.dumps([track, identify, page])
    assert [e["messageId"] for e in shared_server.events(type="page") if e.get("anonymousId") == person] == [
        page["messageId"]
    ]


def test_an_account_batch_is_stored_as_group_calls(shared_server: Server) -> None:
    account = uid()
    body = {
        "account_id": account,
        "domain": "acme.com",
        "identifies": [{"type": "identify", "traits": {"name": "Acme", "group_id": "g-1"}}],
        "events": [{"type": "track", "event": "Renewed", "sent_at": "2024-03-01T10:00:00.000Z"}],
    }
    response = post(shared_server, ACCOUNT, body)
    assert response.status_code == 200 and response.json() == SUCCESS
    groups = shared_server.events(type="group")
    (group,) = [g for g in groups if g.get("groupId") == account]
    assert group["traits"] == {"name": "Acme", "group_id": "g-1"}
    assert group["source"]["route"] == ACCOUNT
    (track,) = [e for e in shared_server.events(type="track") if e["context"].get("groupId") == account]
    assert track["event"] == "Renewed" and track["timestamp"] == "2024-03-01T10:00:00.000Z"


def test_an_account_batch_needs_an_account_id_or_domain(shared_server: Server) -> None:
    response = post(shared_server, ACCOUNT, {"profile_id": "p", "events": []})
    assert_refused(response, 400, "missing_identity", "Missing required field: domain or account_id")


def test_auth_answers_204_for_a_known_key_and_401_otherwise(shared_server: Server) -> None:
    ok = httpx.get(f"{shared_server.url}/web/projects/{shared_server.write_key}/auth")
    assert ok.status_code == 204 and ok.content == b""
    bad = httpx.get(f"{shared_server.url}/web/projects/nope/auth")
    assert_refused(bad, 401, "invalid_write_key", "Unknown write key")


def test_an_unknown_key_gets_401_and_only_its_fingerprint_is_kept(shared_server: Server) -> None:
    before = len(shared_server.rejects())
    key = f"not-a-key-{uuid.uuid4().hex}"  # of its own: the kept refusals are bounded per key
    response = post(shared_server, PROFILE, {"profile_id": "x"}, key=key)
    assert_refused(response, 401, "invalid_write_key", "Unknown write key")
    assert response.json()["error"] == "Unauthorized"
    assert key not in response.text
    (kept,) = shared_server.rejects()[before:]
    assert (kept["source_id"], kept["code"]) == (0, "invalid_write_key")
    assert kept["payload"]["key"] == f"{key[:4]}…{kept['payload']['key'][-8:]}"
    assert key not in str(kept) and "profile_id" not in str(kept)


def test_a_disabled_source_gets_401(server: Server) -> None:
    cli("sources", "disable", "test", "--data-dir", str(server.data_dir))
    assert_refused(post(server, PROFILE, {"profile_id": "x"}), 401, "invalid_write_key", "disabled")


def test_an_empty_post_is_a_key_check(shared_server: Server) -> None:
    """The first Segment Koala destination tested credentials with an empty POST to /batch."""
    before = len(shared_server.events())
    response = post(shared_server, PROFILE, b"")
    assert response.status_code == 200 and response.json() == SUCCESS
    assert len(shared_server.events()) == before
    assert post(shared_server, PROFILE, b"", key="nope").status_code == 401


def test_a_rate_limited_source_gets_429_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", source="slow")
    try:
        data = str(server.data_dir)
        server.write_key = cli("sources", "add", "limited", "--rate-limit", "1", "--data-dir", data).strip()
        page = {"type": "page", "name": "Home"}
        assert post(server, PROFILE, {"profile_id": "p", "page_views": [page] * 2}).status_code == 200
        response = post(server, PROFILE, {"profile_id": "p", "page_views": [page] * 2})
        assert_refused(response, 429, "rate_limited", "events/s")
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        server.stop()


# -- identities, dedup, timestamps, unknown fields ------------------------------------------------


def test_message_id_is_the_dedup_key(shared_server: Server) -> None:
    person, message_id = uid(), uid()
    body = {"profile_id": person, "events": [{"type": "track", "event": "Paid", "message_id": message_id}]}
    assert post(shared_server, PROFILE, body).status_code == 200
    assert post(shared_server, PROFILE, body).status_code == 200
    assert [e["messageId"] for e in mine(shared_server, person)] == [message_id]
    # Without message_id Koala may capture a retry twice; so does trackyard.
    unkeyed = {"profile_id": person, "events": [{"type": "track", "event": "Seen"}]}
    post(shared_server, PROFILE, unkeyed)
    post(shared_server, PROFILE, unkeyed)
    assert len([e for e in mine(shared_server, person) if e["event"] == "Seen"]) == 2


def test_sent_at_is_the_event_time_and_its_absence_the_receive_time(shared_server: Server) -> None:
    person = uid()
    body = {
        "profile_id": person,
        "events": [
            {"type": "track", "event": "A", "sent_at": "2022-11-09T23:57:14.776Z"},
            {"type": "track", "event": "B", "sent_at": "2022-11-10T01:57:14+02:00"},
            {"type": "track", "event": "C"},
        ],
    }
    assert post(shared_server, PROFILE, body).status_code == 200
    a, b, c = mine(shared_server, person)
    assert (
        a["timestamp"] == "2022-11-09T23:57:14.776Z" and a["originalTimestamp"] == "2022-11-09T23:57:14.776Z"
    )
    assert (
        b["timestamp"] == "2022-11-09T23:57:14.000Z" and b["originalTimestamp"] == "2022-11-10T01:57:14+02:00"
    )
    assert c["timestamp"] == c["receivedAt"] and "originalTimestamp" not in c


def test_unknown_fields_are_kept_and_the_request_encodes_back_exactly(shared_server: Server) -> None:
    person = uid()
    body = {
        "profile_id": person,
        "ip": "203.0.113.9",
        "traits": {"plan": "pro"},
        "future_field": [1, None, {"x": 1.5}],
        "events": [
            {"type": "track", "event": "E", "message_id": uid(), "device_ip": "1.1.1.1", "weird": None}
        ],
        "identifies": [
            {"type": "identify", "source": "segment-cloud", "traits": {"$account": {"domain": "a.io"}}}
        ],
        "page_views": [],
    }
    assert post(shared_server, PROFILE, body).status_code == 200
    stored = mine(shared_server, person)
    assert stored[0]["context"]["ip"] == "203.0.113.9"
    assert stored[0]["context"]["koala"]["request"]["future_field"] == [1, None, {"x": 1.5}]
    assert wire.encode(stored) == [wire.KoalaRequest("profile", body)]


def test_a_non_uuid_profile_id_is_accepted(shared_server: Server) -> None:
    """RudderStack's own fixture sends profile_id "123456"."""
    person = f"{uuid.uuid4().int % 10**9}"
    body = {
        "profile_id": person,
        "identifies": [{"type": "identify", "traits": {"name": "R"}, "event": None}],
    }
    assert post(shared_server, PROFILE, body).status_code == 200
    (event,) = mine(shared_server, person)
    assert event["anonymousId"] == person


def test_email_alone_identifies_the_person(shared_server: Server) -> None:
    email = f"{uid()}@example.com"
    assert post(shared_server, PROFILE, {**SEGMENT_TRACK, "email": email}).status_code == 200
    (event,) = [e for e in shared_server.events() if e.get("userId") == email]
    assert "anonymousId" not in event
    assert event["context"]["externalIds"] == [
        {"id": email, "type": "email", "collection": "users", "encoding": "none"}
    ]
    assert event["timestamp"] == "2060-01-24T01:10:21.230Z"


def test_gzip_bodies_are_read(shared_server: Server) -> None:
    person = uid()
    body = gzip.compress(json.dumps({"profile_id": person, "page_views": [{"type": "page"}]}).encode())
    assert post(shared_server, PROFILE, body, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert len(mine(shared_server, person)) == 1


# -- limits and refusals: Koala's 400 with a clear message, the request kept in rejects ------------


@pytest.mark.parametrize("name", ["events", "identifies", "page_views"])
def test_thirty_entries_pass_and_thirty_one_are_refused(shared_server: Server, name: str) -> None:
    kind = {"events": "track", "identifies": "identify", "page_views": "page"}[name]
    entry = {"type": kind, "event": "E"}
    person = uid()
    assert post(shared_server, PROFILE, {"profile_id": person, name: [entry] * 30}).status_code == 200
    assert len(mine(shared_server, person)) == 30
    over = {"profile_id": person, name: [entry] * 31}
    response = post(shared_server, PROFILE, over)
    assert_refused(response, 400, "too_many_entries", f"{name} has 31 entries; Koala accepts at most 30")
    assert response.json()["error"] == "Invalid request"
    assert len(mine(shared_server, person)) == 30
    reject = last_reject(shared_server)
    assert reject["route"] == PROFILE and reject["code"] == "too_many_entries"
    assert reject["payload"] == over and reject["index"] is None


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b'["a"]', "invalid_request", "must be a JSON object"),
        (b'{"events": []}', "missing_identity", "Missing required field: email or profile_id"),
        (b'{"profile_id": 12}', "invalid_type", "profile_id must be a string, not a number"),
        (b'{"profile_id": "p", "events": "x"}', "invalid_type", "events must be an array, not a string"),
        (
            b'{"profile_id": "p", "events": [{"type": "track"}]}',
            "missing_event",
            "events[0] needs an event name",
        ),
        (
            b'{"profile_id": "p", "events": [{"type": "track", "event": "E", "sent_at": "soon"}]}',
            "invalid_timestamp",
            "events[0].sent_at must be an ISO-8601 date-time",
        ),
        (
            b'{"email": "a@b.c", "identifies": [{"type": "identify", "email": "z@b.c"}]}',
            "different_person",
            "must belong to the same person",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_requests_get_400_and_are_kept(
    shared_server: Server, body: bytes, code: str, words: str
) -> None:
    response = post(shared_server, PROFILE, body)
    assert_refused(response, 400, code, words)
    reject = last_reject(shared_server)
    assert reject["code"] == code and reject["route"] == PROFILE
    assert reject["payload"] == (json.loads(body) if code != "invalid_json" else body.decode())


def test_segment_track_without_email_or_profile_id_is_refused_as_koala_does(shared_server: Server) -> None:
    """Segment's track action does not check for an identity (its "required fields" snapshot)."""
    body = {"events": [{"event": "B22nAr", "message_id": uid(), "type": "track"}], "traits": {}}
    response = post(shared_server, PROFILE, body)
    assert_refused(response, 400, "missing_identity", "email or profile_id")
    assert last_reject(shared_server)["payload"] == body


def padded(size: int) -> bytes:
    base = json.dumps({"profile_id": "pad-person", "pad": ""}, separators=(",", ":")).encode()
    body = base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')
    assert len(body) == size
    return body


def test_the_request_size_limit_is_exact(shared_server: Server) -> None:
    limit = 500 * 1024
    assert post(shared_server, PROFILE, padded(limit)).status_code == 200
    response = post(shared_server, PROFILE, padded(limit + 1))
    assert_refused(response, 400, "payload_too_large", "larger than 512,000 bytes")
    reject = last_reject(shared_server)
    assert reject["code"] == "payload_too_large" and reject["payload"] == ""

"""Refused requests are kept the same way in all four formats, once the write key is known.

Whatever a known source sends and has refused (bad JSON, a malformed or oversized batch, a
body over the limit, an invalid event) is kept in the rejects store with its code, its
message and its bytes, cut at 64 KiB; of a stranger's request only the key's refusal is
kept, without a source and without its body (trackyard.ingest.auth_failures).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from trackyard.ingest.auth import AUTH_REFUSALS
from trackyard.ingest.auth_failures import fingerprint

BAD_JSON = b'{"userId": "bad-json", "event": '


def _auth(fmt: str, key: str) -> dict[str, str]:
    if fmt == "segment":
        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    if fmt == "bloomreach":
        return {"Authorization": f"Token {key}"}
    if fmt == "vitally":
        return {"Authorization": f"Basic {key}"}
    return {}


#: One route of each kind, by format: (format, path with {key}, reject route).
ROUTES = [
    ("segment", "/v1/track", "/v1/track"),
    ("segment", "/v1/batch", "/v1/batch"),
    ("koala", "/web/projects/{key}/batch", "/web/projects/{key}/batch"),
    ("bloomreach", "/track/v2/projects/{key}/customers", "/track/v2/projects/{projectToken}/customers"),
    ("bloomreach", "/track/v2/projects/{key}/batch", "/track/v2/projects/{projectToken}/batch"),
    ("vitally", "/analytics/v1/track", "/analytics/v1/track"),
    ("vitally", "/analytics/v1/batch", "/analytics/v1/batch"),
]


def _post(server: Server, fmt: str, path: str, body: bytes, key: str | None = None) -> httpx.Response:
    key = server.write_key if key is None else key
    headers = {"Content-Type": "application/json", **_auth(fmt, key)}
    return httpx.post(server.url + path.format(key=key), content=body, headers=headers)


def _new_rejects(server: Server, before: int) -> list[dict[str, Any]]:
    return server.rejects()[before:]


@pytest.mark.parametrize(("fmt", "path", "route"), ROUTES, ids=[p for _, p, _ in ROUTES])
def test_bad_json_is_kept_in_every_format(shared_server: Server, fmt: str, path: str, route: str) -> None:
    before = len(shared_server.rejects())
    response = _post(shared_server, fmt, path, BAD_JSON)
    assert response.status_code == 400
    (reject,) = _new_rejects(shared_server, before)
    assert (reject["code"], reject["route"], reject["index"]) == ("invalid_json", route, None)
    assert reject["payload"] == BAD_JSON.decode()


@pytest.mark.parametrize(
    ("fmt", "path", "size", "code"),
    [
        ("segment", "/v1/track", 32 * 1024 + 1, "event_too_large"),
        ("segment", "/v1/batch", 500 * 1024 + 1, "payload_too_large"),
        ("koala", "/web/projects/{key}/batch", 500 * 1024 + 1, "payload_too_large"),
        ("vitally", "/analytics/v1/track", 32 * 1024 + 1, "event_too_large"),
    ],
)
def test_a_body_over_the_limit_is_kept_as_its_refusal(
    shared_server: Server, fmt: str, path: str, size: int, code: str
) -> None:
    """Reading stops at the limit, so what is kept is the refusal and its reason, not the body."""
    before = len(shared_server.rejects())
    response = _post(shared_server, fmt, path, b'{"pad": "' + b"x" * size + b'"}')
    assert response.status_code == 400
    (reject,) = _new_rejects(shared_server, before)
    assert reject["code"] == code and reject["payload"] == ""
    assert "larger than" in reject["message"]


def test_a_malformed_segment_batch_is_kept_for_the_key_in_its_body(shared_server: Server) -> None:
    before = len(shared_server.rejects())
    body = {"writeKey": shared_server.write_key, "batch": {"not": "a list"}}
    response = httpx.post(f"{shared_server.url}/v1/batch", json=body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_batch"
    (reject,) = _new_rejects(shared_server, before)
    assert reject["code"] == "invalid_batch" and reject["route"] == "/v1/batch"
    assert reject["payload"] == {"writeKey": "[redacted]", "batch": {"not": "a list"}}


def test_a_batch_over_the_event_limit_is_kept_cut_at_64_kib(shared_server: Server) -> None:
    items = [{"type": "track", "userId": f"u{i}", "event": "Too Many"} for i in range(2_501)]
    body = json.dumps({"batch": items}).encode()
    assert len(body) > 64 * 1024
    before = len(shared_server.rejects())
    response = _post(shared_server, "segment", "/v1/batch", body)
    assert response.status_code == 400 and response.json()["code"] == "batch_too_large"
    (reject,) = _new_rejects(shared_server, before)
    assert reject["code"] == "batch_too_large"
    assert reject["message"].endswith(f"(The payload had {len(body):,} bytes; the first 65,536 are kept.)")
    assert reject["payload"] == body[: 64 * 1024].decode()


def test_an_invalid_single_call_is_kept_whole(shared_server: Server) -> None:
    before = len(shared_server.rejects())
    body = b'{"userId": "no-event-name"}'
    response = _post(shared_server, "segment", "/v1/track", body)
    assert response.status_code == 400 and response.json()["code"] == "event_not_defined"
    (reject,) = _new_rejects(shared_server, before)
    assert reject["payload"] == {"userId": "no-event-name"} and reject["index"] is None


@pytest.mark.parametrize(("fmt", "path", "route"), ROUTES, ids=[p for _, p, _ in ROUTES])
def test_a_strangers_request_keeps_only_its_key_refusal_never_its_body(
    shared_server: Server, fmt: str, path: str, route: str
) -> None:
    """A format that checks the key first keeps the refusal as a reject of no source, with
    the key's fingerprint; one that reads the body first (Segment's keys may be in it)
    answers the bad JSON, and a stranger's bad JSON is never kept."""
    before = len(shared_server.rejects())
    key = f"stranger-{uuid.uuid4().hex}"  # a key of its own: the bound is per client and key
    response = _post(shared_server, fmt, path, BAD_JSON, key=key)
    assert response.status_code in (400, 401)
    new = _new_rejects(shared_server, before)
    assert len(new) == (0 if fmt == "segment" else 1), new
    for reject in new:
        assert reject["source_id"] == 0 and reject["route"] == route
        assert reject["code"] in AUTH_REFUSALS
        assert reject["payload"] == {"key": fingerprint(key), "client_ip": "127.0.0.1"}
        assert key not in json.dumps(reject) and "bad-json" not in json.dumps(reject)

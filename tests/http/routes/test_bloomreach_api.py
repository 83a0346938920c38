"""Bloomreach Engagement's Tracking API, rule by rule, against a real server over real HTTP."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from trackyard.wire import bloomreach as wire

SECRET = "s3cret-value"
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seeds" / "002_047762403bd4c44f.txt"
KB = 1024


def server_with_secret(factory: pytest.TempPathFactory, secret: str) -> Server:
    """A server whose source has a secret, for Bloomreach's private access."""
    srv = start_server(factory.mktemp("bloomreach") / "data")
    cli("sources", "secret", "test", "--secret", secret, "--data-dir", str(srv.data_dir))
    return srv


@pytest.fixture(scope="module")
def br(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = server_with_secret(tmp_path_factory, SECRET)
    yield srv
    srv.stop()


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def url(server: Server, path: str, token: str | None = None) -> str:
    return f"{server.url}/track/v2/projects/{token or server.write_key}{path}"


def post(server: Server, path: str, body: Any, *, auth: Any = "token", **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = kwargs.pop("headers", {})
    if auth == "token":
        headers["Authorization"] = f"Token {server.write_key}"
    return httpx.post(
        url(server, path, kwargs.pop("token", None)),
        content=content,
        headers={"Content-Type": "application/json", **headers},
        auth=None if auth == "token" else auth,
        timeout=30,
        **kwargs,
    )


def event(user: str, event_type: str = "purchase", **data: Any) -> dict[str, Any]:
    return {"customer_ids": {"registered": user}, "event_type": event_type, **data}


def mine(server: Server, user: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("userId") == user]


def seed_examples() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request and response examples of seed 002, verbatim."""
    text = SEED.read_text()
    start = text.index("Additional payload and response examples") + len(
        "Additional payload and response examples"
    )
    decoder = json.JSONDecoder()
    request, end = decoder.raw_decode(text, text.index("{", start))
    response, _ = decoder.raw_decode(text, text.index("{", end))
    return request, response


def sized_command(size: int, user: str) -> bytes:
    """A ``customers/events`` command of exactly ``size`` bytes, every property under 16 KB."""
    properties: dict[str, str] = {}
    while True:
        base = {"name": "customers/events", "data": {**event(user), "properties": {**properties, "pad": ""}}}
        raw = json.dumps(base, separators=(",", ":")).encode()
        if size - len(raw) < 15_000:
            break
        properties[f"p{len(properties)}"] = "x" * 15_000
    padded = raw.replace(b'"pad":""', b'"pad":"' + b"y" * (size - len(raw)) + b'"')
    assert len(padded) == size
    return padded


# -- the seed's examples -------------------------------------------------------------------


def test_seed_request_example_is_answered_in_command_order(br: Server) -> None:
    request, _ = seed_examples()
    before = time.time()
    response = post(br, "/batch", request)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["results", "start_time", "end_time", "success"]
    assert body["success"] is True
    assert before - 1 <= body["start_time"] <= body["end_time"] <= time.time() + 1
    time_result, customers, events = body["results"]
    assert set(time_result) == {"success", "time"} and abs(time_result["time"] - time.time()) < 60
    assert customers == {"success": True, "command_id": "abc"}
    assert events == {"success": True}
    # The seed's two commands name two customers (its e-mail addresses were mangled differently).
    users = [c["data"]["customer_ids"]["registered"] for c in request["commands"][1:]]
    stored = {e["type"]: e for user in users for e in mine(br, user)}
    assert stored["identify"]["traits"] == {"first_name": "Marian", "last_name": "Galik"}
    assert stored["identify"]["context"]["bloomreach"] == {"name": "customers", "command_id": "abc"}
    assert stored["track"]["event"] == "purchase"
    assert stored["track"]["properties"] == {"total_price": 1234.50, "voucher_code": "KA54-548C-TEST"}
    assert stored["track"]["timestamp"] == "1970-01-02T10:17:36.780Z"
    assert stored["track"]["originalTimestamp"] == 123456.78


def test_seed_response_example_failures(br: Server) -> None:
    _, expected = seed_examples()
    commands = [
        {
            "name": "customers",
            "command_id": "my command 1",
            "data": {"customer_ids": {}, "properties": {"a": 1}},
        },
        {
            "name": "customers/events",
            "command_id": "my command 2",
            "data": {"customer_ids": {"registered": uid()}},
        },
    ]
    body = post(br, "/batch", {"commands": commands}).json()
    assert body["results"] == expected["results"]
    assert body["success"] is True


# -- single routes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "name"),
    [
        ("/customers", "identify", None),
        ("/customers/events", "track", "purchase"),
        ("/campaigns/clicks", "track", "campaign_click"),
    ],
)
def test_single_routes_answer_success_and_errors(br: Server, path: str, kind: str, name: str | None) -> None:
    user = uid()
    data = {"customer_ids": {"registered": user}, "properties": {"k": 1}}
    if path == "/customers/events":
        data["event_type"] = "purchase"
    if path == "/campaigns/clicks":
        data["url"] = "https://shop.example/?xnpe_cmp=1"
    response = post(br, path, data)
    assert response.status_code == 200
    assert response.json() == {"success": True, "errors": []}
    (stored,) = mine(br, user)
    assert stored["type"] == kind and stored.get("event") == name
    assert stored["source"] == {
        "id": 1,
        "name": "test",
        "format": "bloomreach",
        "route": f"/track/v2/projects/{{projectToken}}{path}",
    }


def test_system_time(br: Server) -> None:
    response = httpx.get(url(br, "/system/time"), headers={"Authorization": f"Token {br.write_key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["errors"] == []
    assert isinstance(body["time"], float) and abs(body["time"] - time.time()) < 60


def test_a_failed_single_command_is_200_with_success_false_and_kept(br: Server) -> None:
    response = post(br, "/customers/events", {"customer_ids": {"registered": "undefined"}, "event_type": "x"})
    assert response.status_code == 200
    assert response.json() == {"success": False, "errors": ["At least one valid id should be specified"]}
    reject = br.rejects()[-1]
    assert reject["code"] == "no_valid_id" and reject["index"] is None
    assert reject["route"] == "/track/v2/projects/{projectToken}/customers/events"
    assert reject["payload"] == {"customer_ids": {"registered": "undefined"}, "event_type": "x"}


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["token", "access_token", "basic"])
def test_public_and_private_access(br: Server, how: str) -> None:
    user = uid()
    if how == "token":
        response = post(br, "/customers/events", event(user))
    elif how == "access_token":
        response = post(
            br, "/customers/events", event(user), auth=None, params={"access_token": br.write_key}
        )
    else:
        response = post(br, "/customers/events", event(user), auth=(br.write_key, SECRET))
    assert response.json() == {"success": True, "errors": []}
    (stored,) = mine(br, user)
    assert br.write_key not in json.dumps(stored) and SECRET not in json.dumps(stored)


def _auth_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status
    assert response.json() == {"success": False, "error": text}
    assert response.headers["content-type"] == "application/json"


def test_auth_errors_use_bloomreach_statuses_and_bodies(br: Server) -> None:
    other = cli("sources", "add", "other", "--data-dir", str(br.data_dir)).strip()
    body = event(uid())
    _auth_error(post(br, "/customers/events", body, auth=None), 401, "Access key not provided")
    _auth_error(
        post(br, "/customers/events", body, auth=None, headers={"Authorization": "Bearer x"}),
        401,
        "Access key not provided",
    )
    _auth_error(post(br, "/customers/events", body, auth=("", "")), 401, "Access key not provided")
    _auth_error(post(br, "/customers/events", body, token="no-such-project"), 400, "Invalid project id")
    # The credentials must be those of the project the path names.
    _auth_error(
        post(br, "/customers/events", body, auth=None, headers={"Authorization": f"Token {other}"}),
        401,
        "Access key not found",
    )
    _auth_error(post(br, "/customers/events", body, auth=(other, SECRET)), 401, "Access key not found")
    _auth_error(post(br, "/customers/events", body, auth=(br.write_key, "wrong")), 403, "invalid secret")
    _auth_error(post(br, "/customers/events", body, auth=(br.write_key, "")), 403, "invalid secret")
    # A source without a secret has no private access.
    _auth_error(
        post(br, "/customers/events", body, auth=(other, "anything"), token=other), 403, "invalid secret"
    )
    _auth_error(httpx.get(url(br, "/system/time")), 401, "Access key not provided")
    assert mine(br, body["customer_ids"]["registered"]) == []


def test_a_disabled_source_is_an_invalid_project(server: Server) -> None:
    cli("sources", "disable", "test", "--data-dir", str(server.data_dir))
    _auth_error(post(server, "/customers/events", event(uid())), 400, "Invalid project id")


# -- batch structure and limits -------------------------------------------------------------


def test_batch_of_50_is_accepted_and_51_refused(br: Server) -> None:
    user = uid()
    fifty = {"commands": [{"name": "customers/events", "data": event(user, timestamp=i)} for i in range(50)]}
    body = post(br, "/batch", fifty).json()
    assert [r["success"] for r in body["results"]] == [True] * 50
    assert len(mine(br, user)) == 50
    other = uid()
    response = post(
        br,
        "/batch",
        {"commands": [{"name": "customers/events", "data": event(other, timestamp=i)} for i in range(51)]},
    )
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "The batch has 51 commands; at most 50 are allowed per request.",
    }
    assert mine(br, other) == []
    assert br.rejects()[-1]["code"] == "batch_too_large"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"commands": []}', "At least one command is required in 'commands'."),
        (b'{"commands": {}}', None),
        (b"[]", None),
        (b"{}", None),
    ],
)
def test_malformed_batches_are_400_with_message(br: Server, body: bytes, message: str | None) -> None:
    response = post(br, "/batch", body)
    assert response.status_code == 400
    payload = response.json()
    assert set(payload) == {"success", "message"} and payload["success"] is False
    if message is not None:
        assert payload["message"] == message
    assert br.rejects()[-1]["route"] == "/track/v2/projects/{projectToken}/batch"


def test_single_route_invalid_json_is_400(br: Server) -> None:
    response = post(br, "/customers", b"{oops")
    assert (response.status_code, response.json()) == (400, {"success": False, "message": "Invalid JSON"})


def test_failed_commands_do_not_stop_the_others(br: Server) -> None:
    user = uid()
    commands = [
        {"name": "customers/events", "data": event(user, "first")},
        {"name": "customers/nope", "command_id": 7, "data": event(user)},
        "not an object",
        {"name": "customers/events", "data": event(user, "second", properties={"big": "x" * 16 * KB})},
        {"name": "customers", "data": {"customer_ids": {"registered": user}, "properties": {"plan": "pro"}}},
    ]
    results = post(br, "/batch", {"commands": commands}).json()["results"]
    assert [r["success"] for r in results] == [True, False, False, False, True]
    assert results[1]["command_id"] == 7 and "Unknown command name" in results[1]["errors"][0]
    assert results[2]["errors"] == ["Command must be a JSON object."]
    assert results[3]["errors"] == ["Value of event property 'big' must be less than 16 KBytes."]
    assert sorted(e["type"] for e in mine(br, user)) == ["identify", "track"]
    rejects = {r["index"]: r for r in br.rejects() if r["route"].endswith("/batch")}
    assert rejects[1]["payload"]["name"] == "customers/nope"
    assert rejects[3]["code"] == "property_too_large"


def test_command_size_limit_is_800_kb_exclusive(br: Server) -> None:
    under, at = uid(), uid()
    raw = b'{"commands":[' + sized_command(800 * KB - 1, under) + b"," + sized_command(800 * KB, at) + b"]}"
    results = post(br, "/batch", raw).json()["results"]
    assert results == [{"success": True}, {"success": False, "errors": [wire.TOO_LARGE]}]
    assert len(mine(br, under)) == 1 and mine(br, at) == []
    assert br.rejects()[-1]["code"] == "command_too_large"


def test_single_route_size_limit_is_800_kb_exclusive(br: Server) -> None:
    under, at = uid(), uid()
    for user, size, ok in [(under, 800 * KB - 1, True), (at, 800 * KB, False)]:
        data = json.loads(sized_command(size + len(b'{"name":"customers/events","data":}'), user))["data"]
        body = json.dumps(data, separators=(",", ":")).encode()
        assert len(body) == size
        expected = {"success": True, "errors": []} if ok else {"success": False, "errors": [wire.TOO_LARGE]}
        assert post(br, "/customers/events", body).json() == expected
    assert len(mine(br, under)) == 1 and mine(br, at) == []


def test_gzip_bodies_are_accepted(br: Server) -> None:
    user = uid()
    body = gzip.compress(json.dumps(event(user)).encode())
    assert post(br, "/customers/events", body, headers={"Content-Encoding": "gzip"}).json()["success"] is True
    assert len(mine(br, user)) == 1


# -- mapping, times, dedup ----------------------------------------------------------------------


def test_customer_ids_become_user_anonymous_and_external_ids(br: Server) -> None:
    user = uid()
    ids = {"registered": user, "cookie": "c-" + user, "email_id": "ann@example.com"}
    post(br, "/customers", {"customer_ids": ids, "properties": {"first_name": "Ann"}})
    (stored,) = mine(br, user)
    assert stored["anonymousId"] == "c-" + user
    assert [(x["type"], x["id"]) for x in stored["context"]["externalIds"]] == list(ids.items())
    assert stored["traits"] == {"first_name": "Ann"}


def test_nulls_age_and_update_timestamp_are_kept(br: Server) -> None:
    user = uid()
    post(br, "/customers/events", event(user, timestamp=None, properties=None, age=120.0))
    post(
        br,
        "/customers",
        {"customer_ids": {"registered": user}, "properties": {"a": 1}, "update_timestamp": 1700000000},
    )
    by_type = {e["type"]: e for e in mine(br, user)}
    track = by_type["track"]
    assert track["context"]["bloomreach"]["data"] == {"timestamp": None, "properties": None, "age": 120.0}
    received = track["receivedAt"]
    delta = time.mktime(time.strptime(received[:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.strptime(track["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    )
    assert 119 <= delta <= 121
    identify = by_type["identify"]
    assert identify["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert identify["context"]["bloomreach"]["data"] == {"update_timestamp": 1700000000}


def test_iso_timestamps_are_accepted(br: Server) -> None:
    user = uid()
    post(br, "/customers/events", event(user, timestamp="2024-05-01T12:00:00.123+00:00"))
    (stored,) = mine(br, user)
    assert stored["timestamp"] == "2024-05-01T12:00:00.123Z"


def test_a_consent_is_an_event_of_type_consent(br: Server) -> None:
    user = uid()
    consent = {"action": "accept", "category": "newsletter", "valid_until": "unlimited"}
    post(br, "/customers/events", event(user, "consent", timestamp=1700000000.5, properties=consent))
    (stored,) = mine(br, user)
    assert stored["type"] == "track" and stored["event"] == "consent" and stored["properties"] == consent


def test_a_retried_command_is_stored_once(server: Server) -> None:
    user = uid()
    data = event(user, timestamp=1700000000.5, properties={"a": 1, "b": 2})
    assert post(server, "/customers/events", data).json()["success"] is True
    # The same command again, through the batch, keys reordered and with a command_id.
    again = {"properties": {"b": 2, "a": 1}, **{k: v for k, v in data.items() if k != "properties"}}
    results = post(
        server, "/batch", {"commands": [{"name": "customers/events", "command_id": "r1", "data": again}]}
    ).json()
    assert results["results"] == [{"success": True, "command_id": "r1"}]
    assert len(mine(server, user)) == 1
    post(server, "/customers/events", {**data, "timestamp": 1700000001})
    assert len(mine(server, user)) == 2


def test_over_the_rate_limit_is_429_with_retry_after(server: Server) -> None:
    cli("sources", "limit", "test", "0.01", "--data-dir", str(server.data_dir))
    user = uid()
    commands = [{"name": "customers/events", "data": event(user, timestamp=i)} for i in range(3)]
    assert post(server, "/batch", {"commands": commands}).status_code == 200
    response = post(server, "/customers/events", event(user, timestamp=99))
    assert response.status_code == 429
    assert response.json()["success"] is False and "error" in response.json()
    assert int(response.headers["Retry-After"]) >= 1
    assert len(mine(server, user)) == 3

"""Write keys are public: they write to their own source only and read nothing. The admin
API needs the admin token, is off without one and never speaks CORS. Secrets never show up
in stored events, the log or any answer; source secrets are stored hashed."""

from __future__ import annotations

import base64
import inspect
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from trackyard.http import metrics
from trackyard.http.routes import admin

ADMIN = "admin-token-7f3a9c1e5b"
SECRET = "source-secret-d41d8cd98f00b204"
ADMIN_PATHS = (
    "/v1/events",
    "/v1/sources",
    "/v1/profiles-status",
    "/v1/profiles/user_id:u",
    "/v1/accounts/group_id:g",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("security") / "data"
    srv = start_server(data, "--admin-token", ADMIN, "--log-level", "debug")
    cli("sources", "secret", "test", "--secret", SECRET, "--data-dir", str(data))
    srv.other_key = cli("sources", "add", "other", "--data-dir", str(data)).strip()  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def _answers(server: Server) -> list[httpx.Response]:
    """Right and wrong uses of every kind of credential, collected for inspection."""
    url, key, other = server.url, server.write_key, server.other_key  # type: ignore[attr-defined]
    basic = "Basic " + base64.b64encode(f"{key}:{SECRET}".encode()).decode()
    wrong = "Basic " + base64.b64encode(f"{key}:{SECRET}x".encode()).decode()
    br = f"{url}/track/v2/projects/{key}/customers/events"
    command = {"customer_ids": {"registered": "u"}, "event_type": "buy", "properties": {"k": 1}}
    return [
        httpx.post(f"{url}/v1/track", json={"writeKey": key, "userId": "u", "event": "Body Key"}),
        httpx.post(f"{url}/v1/track", json={"writeKey": key + "x", "userId": "u", "event": "E"}),
        httpx.post(f"{url}/v1/track", json={"writeKey": key, "userId": "u"}),
        httpx.post(
            f"{url}/v1/batch",
            json={
                "batch": [
                    {"type": "track", "userId": "u", "event": "Mine"},
                    {"type": "track", "userId": "u", "event": "Theirs", "writeKey": other},
                ]
            },
            auth=(key, ""),
        ),  # fmt: skip
        httpx.post(br, json=command, headers={"Authorization": basic}),
        httpx.post(br, json=command, headers={"Authorization": wrong}),
        httpx.post(
            f"{url}/track/v2/projects/{other}/customers/events",
            json=command,
            headers={"Authorization": basic},
        ),
        httpx.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {ADMIN}x"}),
        httpx.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {key}"}),
        httpx.get(f"{url}/v1/events", auth=(key, "")),
    ]


def test_a_write_key_writes_only_to_its_own_source_and_reads_nothing(server: Server) -> None:
    answers = _answers(server)
    assert [a.status_code for a in answers] == [200, 401, 400, 200, 200, 403, 401, 401, 401, 401]
    assert answers[3].json()["rejected"][0]["code"] == "write_key_mismatch"
    events = server.events()
    assert {e["source"]["name"] for e in events} == {"test"}
    assert {e["event"] for e in events} >= {"Body Key", "Mine", "buy"}
    assert "Theirs" not in {e["event"] for e in events}


def test_secrets_never_appear_in_events_logs_or_answers(server: Server) -> None:
    answers = _answers(server)
    secrets = [server.write_key, server.other_key, SECRET, ADMIN]  # type: ignore[attr-defined]
    for answer in answers:
        for secret in secrets:
            assert secret not in answer.text and secret not in str(answer.headers), answer.text
    stored = "\n".join(str(e) for e in server.events())
    log = server.log.read_text()
    for secret in secrets:
        assert secret not in stored
        assert secret not in log
    db = (server.data_dir / "trackyard.db").read_bytes()
    assert SECRET.encode() not in db and ADMIN.encode() not in db
    listed = httpx.get(f"{server.url}/v1/sources", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert all("secret" not in name for source in listed["sources"] for name in source)


def test_the_admin_api_needs_the_token_and_never_speaks_cors(server: Server) -> None:
    origin = {"Origin": "https://evil.example"}
    for path in ADMIN_PATHS:
        assert httpx.get(f"{server.url}{path}").status_code == 401
        ok = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {ADMIN}", **origin})
        # Past the guard: the answer (200, or 404 for an unknown profile) is the endpoint's own.
        assert ok.status_code in (200, 404) and "admin" not in ok.json().get("code", "")
        assert not any(h.startswith("access-control-") for h in ok.headers)
        preflight = httpx.options(
            f"{server.url}{path}",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert not any(h.startswith("access-control-") for h in preflight.headers)
    collection = httpx.options(
        f"{server.url}/v1/track", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert collection.headers["access-control-allow-origin"] == "https://evil.example"


def test_the_admin_and_metrics_tokens_are_compared_in_constant_time() -> None:
    assert "hmac.compare_digest" in inspect.getsource(admin.bears)
    assert "bears(request, token)" in inspect.getsource(admin.admin_only)
    assert "bears(request, token)" in inspect.getsource(metrics.metrics_route)


def test_without_an_admin_token_the_admin_api_is_off(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    plain = start_server(tmp_path_factory.mktemp("no-admin") / "data")
    try:
        for path in ADMIN_PATHS:
            for headers in (
                {},
                {"Authorization": "Bearer x"},
                {"Authorization": f"Bearer {plain.write_key}"},
            ):
                answer = httpx.get(f"{plain.url}{path}", headers=headers)
                assert answer.status_code == 404 and answer.json()["code"] == "admin_api_off"
    finally:
        plain.stop()

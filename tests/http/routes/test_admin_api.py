"""The read API: only the admin token opens it; write keys read nothing; browsers are kept out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server

TOKEN = "admin-token-for-tests"


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("admin") / "data", "--admin-token", TOKEN)
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_configured_token_the_admin_api_is_off(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/events", headers=bearer("anything"))
    assert response.status_code == 404
    assert response.json()["code"] == "admin_api_off" and "--admin-token" in response.json()["message"]


def test_only_the_admin_token_reads(admin_server: Server) -> None:
    url = f"{admin_server.url}/v1/sources"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=bearer("wrong")).status_code == 401
    as_write_key = httpx.get(url, auth=(admin_server.write_key, ""))
    assert as_write_key.status_code == 401 and as_write_key.json()["code"] == "invalid_admin_token"
    assert TOKEN not in as_write_key.text
    ok = httpx.get(url, headers=bearer(TOKEN))
    assert ok.status_code == 200
    assert [s["name"] for s in ok.json()["sources"]] == ["test"]


def test_events_page_through_the_log_with_a_cursor(admin_server: Server) -> None:
    items = [{"type": "track", "userId": "u", "event": f"E{i}", "messageId": f"admin-{i}"} for i in range(5)]
    httpx.post(f"{admin_server.url}/v1/batch", json={"batch": items}, auth=(admin_server.write_key, ""))
    seen: list[str] = []
    after = 0
    while True:
        page = httpx.get(
            f"{admin_server.url}/v1/events", params={"after": after, "limit": 2}, headers=bearer(TOKEN)
        ).json()
        if not page["events"]:
            break
        seen += [e["messageId"] for e in page["events"]]
        after = page["next"]
    assert seen == [f"admin-{i}" for i in range(5)]
    filtered = httpx.get(f"{admin_server.url}/v1/events", params={"type": "identify"}, headers=bearer(TOKEN))
    assert filtered.json()["events"] == []
    bad = httpx.get(f"{admin_server.url}/v1/events", params={"after": "x"}, headers=bearer(TOKEN))
    assert bad.status_code == 400


def test_browsers_on_other_origins_cannot_read_the_admin_api(admin_server: Server) -> None:
    preflight = httpx.options(
        f"{admin_server.url}/v1/events",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    read = httpx.get(
        f"{admin_server.url}/v1/events", headers={**bearer(TOKEN), "Origin": "https://evil.example"}
    )
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_the_admin_token_also_comes_from_the_environment(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"TRACKYARD_ADMIN_TOKEN": "from-env"})
    try:
        assert httpx.get(f"{server.url}/v1/sources", headers=bearer("from-env")).status_code == 200
    finally:
        server.stop()

"""The destinations admin API over real HTTP, against a running server that delivers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.destinations.conftest import Answer, Receiver, poll

TOKEN = "admin-token-for-destination-tests"
_FAST = {
    "TRACKYARD_DESTINATION_BACKOFF_SECONDS": "0.01",
    "TRACKYARD_DESTINATION_BACKOFF_CAP_SECONDS": "0.05",
    "TRACKYARD_DESTINATION_TIMEOUT_SECONDS": "1",
}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "data", "--admin-token", TOKEN, env={**os.environ, **_FAST})
    yield server
    server.stop()


def _api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def _ids(receiver: Receiver) -> list[str]:
    return [e["messageId"] for r in receiver.delivered() for e in r.json()]


def test_destinations_are_managed_over_the_admin_api_and_secrets_never_come_back(
    admin: Server, receiver: Receiver
) -> None:
    with _api(admin) as api:
        assert httpx.get(f"{admin.url}/v1/destinations").status_code == 401
        assert httpx.get(f"{admin.url}/v1/destinations", auth=(admin.write_key, "")).status_code == 401
        assert api.get("/v1/destinations").json() == {"destinations": []}
        added = api.post(
            "/v1/destinations",
            json={
                "name": "hook",
                "format": "webhook",
                "url": receiver.url,
                "secret": "s3cr3t-value",
                "headers": {"Authorization": "Bearer t0ken-value"},
                "batch_size": 10,
            },
        )
        assert added.status_code == 201, added.text
        assert added.json()["secret"] == "set" and added.json()["headers"] == ["Authorization"]
        sent = [{"type": "track", "event": "E", "userId": "u", "messageId": f"a{i}"} for i in range(5)]
        httpx.post(f"{admin.url}/v1/batch", json={"batch": sent}, auth=(admin.write_key, ""))
        # The running server's supervisor started delivering to the first destination.
        poll(lambda: sorted(_ids(receiver)) == [f"a{i}" for i in range(5)], timeout=30)
        poll(lambda: api.get("/v1/destinations/hook").json()["lag"] == 0)  # committed after the answer
        shown = api.get("/v1/destinations/hook").json()
        assert (shown["delivered"], shown["lag"], shown["dead"], shown["running"]) == (5, 0, 0, True)

        refused = api.post(
            "/v1/destinations", json={"name": "hook", "format": "webhook", "url": receiver.url}
        )
        assert refused.status_code == 409
        bad = api.post("/v1/destinations", json={"name": "x", "format": "segment", "url": receiver.url})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_key"
        unknown = api.post(
            "/v1/destinations", json={"name": "x", "format": "webhook", "url": "u", "colour": 1}
        )
        assert unknown.status_code == 400
        assert api.get("/v1/destinations/nope").status_code == 404

        patched = api.patch("/v1/destinations/hook", json={"ordered": False, "batch_size": 1})
        assert patched.status_code == 200 and patched.json()["ordered"] is False
        assert api.patch("/v1/destinations/hook", json={"format": "segment"}).status_code == 400
        assert api.post("/v1/destinations/hook/disable").json()["enabled"] is False
        assert api.post("/v1/destinations/hook/enable").json()["enabled"] is True

        # A permanent answer: a dead letter, then a replay of it over the API.
        receiver.answer(Answer(400, body=b"refused"))
        httpx.post(
            f"{admin.url}/v1/track",
            json={"event": "E", "userId": "u", "messageId": "late"},
            auth=(admin.write_key, ""),
        )
        poll(lambda: len(api.get("/v1/destinations/hook/dead").json()["dead"]) == 1, timeout=30)
        (letter,) = api.get("/v1/destinations/hook/dead").json()["dead"]
        assert letter["event"]["messageId"] == "late" and "HTTP 400: refused" in letter["reason"]
        assert api.get("/v1/destinations/hook").json()["last_error"]["response"] == "HTTP 400: refused"
        summary = api.post("/v1/destinations/hook/replay", json={"dead": True}).json()
        assert (summary["total"], summary["delivered"], summary["dead"]) == (1, 1, 0)
        assert api.post("/v1/destinations/hook/replay", json={"since": "1h"}).json()["delivered"] == 6
        assert api.post("/v1/destinations/hook/replay", json={"after": 4}).json()["total"] == 2
        assert api.post("/v1/destinations/hook/replay", json={}).status_code == 400
        assert (
            api.post("/v1/destinations/hook/replay", json={"since": "soon"}).json()["code"] == "invalid_since"
        )

        for response in (api.get("/v1/destinations"), api.get("/v1/destinations/hook")):
            assert "s3cr3t-value" not in response.text and "t0ken-value" not in response.text
        assert api.delete("/v1/destinations/hook").json() == {"removed": "hook"}
        assert api.get("/v1/destinations").json() == {"destinations": []}

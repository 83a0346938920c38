"""Every answer on a collection path is readable cross-origin, errors included.

A browser that cannot read an answer reports a CORS failure instead of the error, and the
SDK retries it as a network failure; so 400s, 401s, 404s, 405s and 429s need the headers
as much as a 200. The admin API and unknown paths outside the collection prefixes get none.
"""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path

import httpx

from tests.conftest import Server, start_server
from tests.faults._raw import closed_within, connect, head, status_of

ORIGIN = "http://localhost:5173"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def assert_readable(answer: httpx.Response, origin: str | None) -> None:
    expected = origin or "*"
    assert answer.headers.get("access-control-allow-origin") == expected, (answer.status_code, answer.text)
    assert answer.json()["code"] and answer.json()["message"]


def test_error_answers_on_collection_paths_carry_cors(shared_server: Server) -> None:
    url = shared_server.url
    good = basic(shared_server.write_key)
    for origin in (ORIGIN, None):
        headers = {"Origin": origin} if origin else {}
        cases = [
            # (answer, expected status): the fast path, the Starlette routes, and the router's own.
            (httpx.post(f"{url}/v1/track", json={"event": "E", "userId": "u"}, headers=headers), 401),
            (httpx.post(f"{url}/v1/batch", content=b"{not json", headers={**good, **headers}), 400),
            (httpx.post(f"{url}/v1/track", json={"userId": "u"}, headers={**good, **headers}), 400),
            (httpx.post(f"{url}/web/projects/nope/batch", json={"profiles": []}, headers=headers), 401),
            (httpx.get(f"{url}/v1/projects/nope/settings", headers=headers), 404),
            (httpx.post(f"{url}/v1/trak", json={}, headers={**good, **headers}), 404),
            (httpx.get(f"{url}/analytics/v1/nope", headers=headers), 404),
            (httpx.get(f"{url}/v1/track", headers=headers), 405),
        ]
        for answer, status in cases:
            assert answer.status_code == status, (answer.request.url, answer.text)
            assert_readable(answer, origin)
    not_found = httpx.get(f"{url}/v1/trak", headers={"Origin": ORIGIN})
    assert not_found.json()["code"] == "not_found" and "/v1/trak" in not_found.json()["message"]
    not_allowed = httpx.get(f"{url}/v1/track", headers={"Origin": ORIGIN})
    assert "POST" in not_allowed.headers["allow"]


def test_paths_outside_the_collection_routes_get_no_cors(shared_server: Server) -> None:
    for path in ("/nope", "/admin/nope"):
        answer = httpx.get(f"{shared_server.url}{path}", headers={"Origin": ORIGIN})
        assert answer.status_code == 404
        assert not any(name.startswith("access-control-") for name in answer.headers), path


def test_the_overload_429_carries_cors(tmp_path: Path) -> None:
    # A bound of one byte lets one request in at a time: hold one open, and the next is refused.
    server = start_server(tmp_path / "data", env={"TRACKYARD_MAX_IN_FLIGHT_BYTES": "1"})
    auth = "Authorization: Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()
    held = connect(server.url)
    try:
        held.sendall(head("/v1/batch", 1000, auth) + b'{"batch": [')
        deadline = time.monotonic() + 10
        while True:  # until the server has taken the held request in
            answer = httpx.post(
                f"{server.url}/v1/track", json={"event": "E", "userId": "u"}, headers={"Origin": ORIGIN}
            )
            if answer.status_code == 429 or time.monotonic() > deadline:
                break
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        assert_readable(answer, ORIGIN)
        assert answer.headers["access-control-allow-credentials"] == "true"
    finally:
        held.close()
        server.stop()


def test_the_late_body_408_carries_cors(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"TRACKYARD_BODY_TIMEOUT_SECONDS": "1"})
    try:
        with contextlib.closing(connect(server.url)) as sock:
            sock.sendall(head("/v1/track", 1000, f"Origin: {ORIGIN}") + b'{"userId"')
            closed, answer = closed_within(sock, 10)
        assert closed and status_of(answer) == 408, answer[:300]
        assert f"access-control-allow-origin: {ORIGIN}".encode() in answer.lower()
    finally:
        server.stop()

"""Every route of the four formats, over real HTTP, against hostile requests: always a clear
4xx in the format's own error form (or 2xx), never a 5xx, a hang or a dead server."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import Server
from tests.fuzz.cases import ROUTES, UNDECODABLE, Case, cases, gzip_bomb, problem, send

#: Peak resident memory the server may reach while fuzzed (it idles at about 45 MB).
MAX_RSS_KB = 250 * 1024


def _peak_rss_kb(server: Server) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def http(shared_server: Server) -> httpx.Client:
    return httpx.Client(base_url=shared_server.url, timeout=30)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=cases())
def test_every_route_answers_hostile_input_with_a_clear_error(
    case: Case, shared_server: Server, http: httpx.Client
) -> None:
    try:
        response = send(http, case, shared_server.write_key)
    except httpx.TransportError:
        # An early answer (401 before a large body was read) may close the connection.
        assert http.get("/healthz").status_code == 200
        return
    assert problem(case, response) is None, (case.route, case.body[:200], case.encoding)


def test_a_gzip_bomb_costs_no_more_memory_than_the_limit(shared_server: Server, http: httpx.Client) -> None:
    for path in ("/v1/batch", "/v1/track"):
        response = http.post(
            path,
            content=gzip_bomb(),
            headers={"Content-Encoding": "gzip"},
            auth=(shared_server.write_key, ""),
        )
        assert response.status_code == 400
        assert response.json()["code"] in ("payload_too_large", "event_too_large")
    assert _peak_rss_kb(shared_server) < MAX_RSS_KB


def test_truncated_gzip_is_a_400_that_says_so(shared_server: Server, http: httpx.Client) -> None:
    body = gzip.compress(b'{"userId": "u", "event": "E"}')[:-6]
    response = http.post(
        "/v1/track", content=body, headers={"Content-Encoding": "gzip"}, auth=(shared_server.write_key, "")
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_gzip"


def test_memory_stays_bounded_after_the_fuzzing(shared_server: Server) -> None:
    # Runs after the fuzz tests in this module (same shared server): whatever they sent,
    # the server is up and its peak memory stayed small.
    assert httpx.get(f"{shared_server.url}/healthz").status_code == 200
    assert _peak_rss_kb(shared_server) < MAX_RSS_KB


_DECODING_ROUTES = [r for r in ROUTES if r.method == "POST" and r.path != "/v1/m"]


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_json_is_a_400_on_every_route(
    name: str, shared_server: Server, http: httpx.Client
) -> None:
    failures = []
    for route in _DECODING_ROUTES:
        case = Case(route, UNDECODABLE[name], None, "application/json", "RIGHT", None)
        if (found := problem(case, send(http, case, shared_server.write_key))) is not None:
            failures.append(f"{route.path}: {found}")
    assert not failures, failures

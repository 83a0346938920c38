"""The server log's periodic traffic summary, from a real server at the default log level."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import start_server
from trackyard.http.traffic import summary_line


def test_summary_line_counts_requests_events_and_refusals_by_status() -> None:
    assert summary_line(56, 1234, Counter({401: 2, 400: 1})) == (
        "accepted 56 requests (1,234 new events stored), refused 3 (401: 2, 400: 1)"
    )
    assert summary_line(1, 1, Counter()) == "accepted 1 request (1 new event stored)"
    assert summary_line(0, 0, Counter({429: 3, 401: 3, 503: 7})).endswith(
        "refused 13 (503: 7, 401: 3, 429: 3)"
    )


def test_the_server_logs_a_summary_while_there_is_traffic(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", "--log-level", "info", env={"TRACKYARD_TRAFFIC_SUMMARY_SECONDS": "1"}
    )
    try:
        batch = {"batch": [{"type": "track", "event": "E", "userId": f"u{i}"} for i in range(5)]}
        with httpx.Client(base_url=server.url, auth=(server.write_key, ""), timeout=10) as client:
            assert client.post("/v1/batch", json=batch).status_code == 200
            assert client.post("/v1/track", json={"event": "E", "userId": "u"}).status_code == 200
            assert client.post("/v1/track", json={"event": "E"}).status_code == 400
            refused = client.post("/v1/track", json={"event": "E", "userId": "u"}, auth=("wrong", ""))
            assert refused.status_code == 401
            assert client.get("/healthz").status_code == 200  # not traffic: not counted
        expected = "accepted 2 requests (6 new events stored), refused 2 (400: 1, 401: 1)"
        deadline = time.monotonic() + 20
        while expected not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)
    finally:
        server.stop()

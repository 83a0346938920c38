"""``serve --access-log`` and ``--log-format json``, read from a real server's standard error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.conftest import Server, start_server


def wait_for_lines(server: Server, n: int, marker: str) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        lines = [line for line in server.log.read_text().splitlines() if marker in line]
        if len(lines) >= n:
            return lines
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)


def send(server: Server) -> None:
    ok = httpx.post(f"{server.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(server.write_key, ""))
    assert ok.status_code == 200
    assert httpx.post(f"{server.url}/v1/track", json={"event": "E"}, auth=("nope", "")).status_code == 401
    key = server.write_key
    koala = {"email": "a@example.com", "events": [{"type": "track", "event": "V"}]}
    assert httpx.post(f"{server.url}/web/projects/{key}/batch", json=koala).status_code == 200


def test_no_access_log_by_default(server: Server) -> None:
    send(server)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert "/v1/track" not in server.log.read_text()


def test_access_log_lines_say_what_each_request_was(tmp_path: Path) -> None:
    # At --log-level warning (the fixture's): asking for the access log shows it anyway.
    server = start_server(tmp_path / "data", "--access-log")
    try:
        send(server)
        lines = wait_for_lines(server, 3, "ip=127.0.0.1")
    finally:
        server.stop()
    assert "POST /v1/track 200 17B " in lines[0]
    assert lines[0].endswith("format=segment source=test ip=127.0.0.1")
    assert " 401 " in lines[1] and lines[1].endswith("format=segment source=- ip=127.0.0.1")
    # A path with a key in it is logged as its route's template: keys never reach the log.
    assert "POST /web/projects/{key}/batch 200 " in lines[2]
    assert "format=koala source=test" in lines[2]
    assert server.write_key not in server.log.read_text()


def test_json_logs_are_one_object_a_line_with_the_access_fields(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--access-log", "--log-format", "json", "--log-level", "info")
    try:
        send(server)
        wait_for_lines(server, 3, '"logger":"trackyard.access"')
    finally:
        server.stop()
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    # Every line, uvicorn's and the consumers' included, is a JSON object.
    records: list[dict[str, Any]] = [msgspec.json.decode(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(record) for record in records)
    assert {"uvicorn.error", "trackyard.access"} <= {record["logger"] for record in records}
    access = [record for record in records if record["logger"] == "trackyard.access"]
    first = access[0]
    assert first["level"] == "info"
    assert (first["method"], first["path"], first["status"], first["bytes"]) == ("POST", "/v1/track", 200, 17)
    assert (first["format"], first["source"], first["client_ip"]) == ("segment", "test", "127.0.0.1")
    assert isinstance(first["ms"], float) and first["ms"] > 0
    assert (access[1]["status"], access[1]["source"]) == (401, "")

"""SIGTERM: requests in flight finish and are committed, then the process exits; a restart
on the same data dir reopens everything without manual steps."""

from __future__ import annotations

import base64
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import Server, start_server
from tests.faults._raw import closed_within, connect, head, status_of


def _wait_until_not_listening(server: Server, timeout: float = 15.0) -> None:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError("the server kept listening after SIGTERM")


def _stop_mid_request(server: Server) -> tuple[int | None, int]:
    """SIGTERM while a request is half sent; finish it; its status and the exit code."""
    event = b'{"userId": "u", "event": "In Flight", "messageId": "in-flight-1"}'
    auth = "Authorization: Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()
    sock = connect(server.url, timeout=30)
    try:
        sock.sendall(head("/v1/track", len(event), auth) + event[:10])
        # Another answered request proves the server has read the first one's head.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        _wait_until_not_listening(server)
        sock.sendall(event[10:])
        _, answer = closed_within(sock, 20)
    finally:
        sock.close()
    code = server.process.wait(timeout=30)
    assert server.process.stdout is not None
    server.process.stdout.close()
    return status_of(answer), code


def test_sigterm_finishes_the_request_in_flight_commits_it_and_a_restart_reopens(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    status, code = _stop_mid_request(server)
    assert status == 200
    # 0, not death by the re-raised signal (uvicorn's own behaviour, which trackyard overrides).
    assert code == 0
    server.start()
    try:
        answer = httpx.post(
            f"{server.url}/v1/track", json={"userId": "u", "event": "After"}, auth=(server.write_key, "")
        )
        assert answer.status_code == 200
        assert [e["event"] for e in server.events()] == ["In Flight", "After"]
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()

"""Slow and oversized clients: bounded before parsing, timed out, and never holding up others."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.faults._raw import closed_within, connect, head, status_of

#: The deadlines the proposed fix reads (TRACKYARD_HEADER_TIMEOUT_SECONDS and
#: TRACKYARD_BODY_TIMEOUT_SECONDS); short here so the tests are quick.
TIMEOUTS = {"TRACKYARD_HEADER_TIMEOUT_SECONDS": "2", "TRACKYARD_BODY_TIMEOUT_SECONDS": "3"}
GRACE = 6.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("slow") / "data", env=TIMEOUTS)
    yield srv
    srv.stop()


def _auth(server: Server) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()


def test_a_trickling_client_does_not_hold_up_anyone_else(server: Server) -> None:
    stop = threading.Event()
    slow = connect(server.url)
    slow.sendall(head("/v1/track", 10_000, _auth(server)))

    def trickle() -> None:
        while not stop.is_set():
            try:
                slow.send(b" ")
            except OSError:
                return
            stop.wait(0.05)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        with httpx.Client(base_url=server.url, auth=(server.write_key, "")) as http:
            started = time.monotonic()
            for i in range(50):
                assert http.post(
                    "/v1/track", json={"userId": "u", "event": "E", "messageId": f"t{i}"}
                ).is_success
            assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join(timeout=10)
        slow.close()


@pytest.mark.parametrize("shape", ["one huge header", "many headers"])
def test_an_enormous_head_is_refused_before_parsing(server: Server, shape: str) -> None:
    sock = connect(server.url)
    try:
        extra = (
            ["X-Big: " + "a" * 1_000_000]
            if shape == "one huge header"
            else [f"X-H{i}: v" for i in range(50_000)]
        )
        try:
            event = b'{"userId": "u", "event": "E"}'
            sock.sendall(head("/v1/track", len(event), _auth(server), *extra) + event)
        except OSError:
            pass  # the server may close before the whole head is sent
        closed, answer = closed_within(sock, GRACE)
        # Without the bound the event is parsed and stored: 200.
        assert status_of(answer) == 431, answer[:100]
    finally:
        sock.close()


@pytest.mark.parametrize("sent", [b"", b"POST /v1/track HTTP/1.1\r\nHost: x\r\n"])
def test_a_head_that_never_completes_is_dropped(server: Server, sent: bytes) -> None:
    sock = connect(server.url)
    try:
        sock.sendall(sent)
        closed, _ = closed_within(sock, float(TIMEOUTS["TRACKYARD_HEADER_TIMEOUT_SECONDS"]) + GRACE)
        assert closed
    finally:
        sock.close()


def test_a_body_trickled_byte_by_byte_times_out(server: Server) -> None:
    sock = connect(server.url)
    try:
        sock.sendall(head("/v1/track", 10_000, _auth(server)))
        deadline = time.monotonic() + float(TIMEOUTS["TRACKYARD_BODY_TIMEOUT_SECONDS"]) + GRACE
        answer = b""
        closed = False
        sock.settimeout(0.1)
        while time.monotonic() < deadline and not closed:
            try:
                sock.send(b" ")
                chunk = sock.recv(4096)
                closed = not chunk
                answer += chunk
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed or status_of(answer) == 408, answer[:200]
    finally:
        sock.close()


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        sock = connect(srv.url)
        sock.sendall(head("/v1/track", 100, _auth(srv)) + b'{"userId"')
        # The server has read the head once it answers another request on another connection.
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        sock.close()
        assert httpx.post(f"{srv.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(srv.write_key, ""))
    finally:
        srv.stop()
    assert "Traceback" not in srv.log.read_text()

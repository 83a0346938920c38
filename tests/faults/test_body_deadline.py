"""The body deadline is kept per connection by the server: every route, pipelined requests too."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import msgspec
import pytest

from tests.conftest import Server, start_server
from tests.faults._raw import closed_within, connect, head, status_of

BODY_TIMEOUT = 2.0
GRACE = 6.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("deadline") / "data",
        env={"TRACKYARD_BODY_TIMEOUT_SECONDS": str(int(BODY_TIMEOUT))},
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize("route", ["/v1/track", "/v1/batch", "koala"])
def test_a_body_that_stops_short_gets_408_on_any_route(server: Server, route: str) -> None:
    path = f"/web/projects/{server.write_key}/batch" if route == "koala" else route
    with contextlib.closing(connect(server.url)) as sock:
        started = time.monotonic()
        sock.sendall(head(path, 1000, "Content-Type: application/json") + b'{"userId"')
        closed, answer = closed_within(sock, BODY_TIMEOUT + GRACE)
        assert closed and status_of(answer) == 408, answer[:200]
        assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["code"] == "request_timeout"
        assert time.monotonic() - started >= BODY_TIMEOUT - 0.5


def test_a_pipelined_request_gets_its_own_deadline(server: Server) -> None:
    event = b'{"userId": "u", "event": "E", "writeKey": "' + server.write_key.encode() + b'"}'
    with contextlib.closing(connect(server.url)) as sock:
        sock.sendall(head("/v1/track", len(event)) + event + head("/v1/track", 1000) + b'{"userId"')
        closed, answer = closed_within(sock, BODY_TIMEOUT + GRACE)
        assert closed, answer[:200]
        assert status_of(answer) == 200, answer[:200]
        second = answer[answer.index(b"HTTP/1.1 ", 9) :]
        assert status_of(second) == 408, answer[:400]


def test_a_body_completed_in_pieces_is_not_timed_out(server: Server) -> None:
    event = b'{"userId": "u", "event": "E", "writeKey": "' + server.write_key.encode() + b'"}'
    with contextlib.closing(connect(server.url)) as sock:
        sock.sendall(head("/v1/track", len(event)) + event[:5])
        time.sleep(BODY_TIMEOUT / 2)
        sock.sendall(event[5:])
        sock.settimeout(BODY_TIMEOUT + GRACE)
        answer = sock.recv(65536)
        assert status_of(answer) == 200, answer[:200]
        # The connection stays usable after the deadline would have passed.
        time.sleep(BODY_TIMEOUT)
        sock.sendall(head("/v1/track", len(event)) + event)
        assert status_of(sock.recv(65536)) == 200

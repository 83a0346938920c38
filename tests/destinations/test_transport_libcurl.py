"""What the libcurl transport sends and how it names a timeout, beyond what
``test_transport.py`` holds for every client: the request's head as the receiver reads it,
and a receiver that stops answering on a kept-alive connection."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.destinations.test_transport import RawServer, _answer
from trackyard import __version__
from trackyard.destinations.transport import Transport


def _head(request: bytes) -> list[bytes]:
    return request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]


def test_a_large_body_goes_without_expect_and_the_defaults_yield_to_the_destinations() -> None:
    server = RawServer(lambda request: _answer())
    transport = Transport(timeout=2.0)
    body = b"x" * 5000  # libcurl would ask for 100-continue before a body over 1 KB
    assert transport.post(server.url, body, {"user-agent": "mine/1", "X-Empty": ""}).status_code == 200
    assert transport.post(server.url, b"{}", {}).status_code == 200
    custom, plain = (_head(request) for request in server.requests)
    assert server.requests[0].endswith(b"\r\n\r\n" + body)
    names = [line.split(b":")[0].lower() for line in custom]
    assert b"expect" not in names and b"content-type" not in names  # no form type of libcurl's
    assert b"user-agent: mine/1" in custom and names.count(b"user-agent") == 1
    assert b"X-Empty:" in custom  # an empty header is sent, not dropped
    assert f"User-Agent: trackyard/{__version__}".encode() in plain
    assert b"Accept: */*" in plain and b"Accept-Encoding: identity" in plain
    transport.close()
    server.close()


def test_a_receiver_that_stops_answering_on_a_kept_alive_connection_is_a_read_timeout() -> None:
    answered = threading.Event()

    def script(request: bytes) -> bytes | None:
        if answered.is_set():
            threading.Event().wait(5)  # holds the connection open without answering
            return None
        answered.set()
        return _answer()

    server = RawServer(script)
    transport = Transport(timeout=0.3)
    assert transport.post(server.url, b"{}", {}).status_code == 200
    with pytest.raises(httpx.ReadTimeout, match="timed out"):
        transport.post(server.url, b"{}", {})
    assert server.connections == 1 and len(server.requests) == 2  # sent once, on the kept connection
    transport.close()
    server.close()

"""What the libcurl transport sends and how it names a timeout, beyond what
``test_transport.py`` holds for every client: the request's head as the receiver reads it,
a receiver that stops answering on a kept-alive connection, and HTTPS through a proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.destinations.test_transport import RawServer, _answer, self_signed
from trackyard import __version__
from trackyard.destinations.transport import Transport, _target, _tls_context


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


class ConnectProxy:
    """A real HTTP proxy for ``CONNECT`` only: notes each request line, answers 200 with a
    header of its own, then pipes the bytes both ways."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += client.recv(1)
        self.requests.append(head.split(b"\r\n")[0])
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\n\r\n")
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_https_goes_through_a_proxy_from_the_environment_unless_no_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, served = self_signed(tmp_path)
    server = RawServer(lambda request: _answer(b"over tls", b"X-Receiver: b\r\n"), tls=served)
    proxy = ConnectProxy()
    port = server.url.rpartition(":")[2]
    for name in ("NO_PROXY", "no_proxy", "SSL_CERT_DIR", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    _tls_context.cache_clear()
    _target.cache_clear()  # a URL's proxy is read once a process
    try:
        through = Transport(timeout=2.0)
        answer = through.post(f"{server.url}/batch", b"{}", {})
        assert (answer.status_code, answer.content) == (200, b"over tls")
        assert "proxy-agent" not in answer.headers and answer.headers["x-receiver"] == "b"
        assert proxy.requests == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]
        through.close()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        _target.cache_clear()
        direct = Transport(timeout=2.0)
        assert direct.post(f"{server.url}/batch", b"{}", {}).content == b"over tls"
        assert len(proxy.requests) == 1 and len(server.requests) == 2
        direct.close()
    finally:
        _tls_context.cache_clear()
        _target.cache_clear()
        proxy.close()
        server.close()

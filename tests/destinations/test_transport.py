"""The lean HTTP/1.1 transport against a real socket server that answers with raw bytes:
kept-alive connections, the ways an answer's body may end, a connection the server closed
while idle, httpx's error classes, and a proxy from the environment."""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from trackyard.destinations.transport import Transport, _tls_context

#: Answers a request's raw bytes (head and body) with raw bytes; ``None`` closes without answering.
Script = Callable[[bytes], bytes | None]


class RawServer:
    """A real TCP server (TLS with ``tls``): reads each request whole (its Content-Length
    body) and writes what the script answers; keeps a connection open unless the answer says
    ``Connection: close`` or ``close_idle`` (then it closes once the answer is written)."""

    def __init__(
        self, script: Script, *, close_idle: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.script = script
        self.tls = tls
        self.close_idle = close_idle
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._exchange(conn)
        except OSError:
            pass  # a client that refused the certificate
        finally:
            self.closed += 1

    def _exchange(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                request = head + reader.read(length)
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_idle or b"connection: close" in answer.lower():
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def transport() -> Iterator[Transport]:
    opened = Transport(timeout=2.0)
    yield opened
    opened.close()


def _answer(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _ok(body: bytes = b'{"ok":true}') -> Script:
    return lambda request: _answer(body)


def _poll(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


def self_signed(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made by openssl (skips without it), and a server's TLS
    context serving it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate with")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    return cert, served


def test_requests_share_one_kept_alive_connection(transport: Transport) -> None:
    server = RawServer(_ok())
    for n in range(3):
        answer = transport.post(f"{server.url}/batch", b'{"n":%d}' % n, {"Content-Type": "application/json"})
        assert (answer.status_code, answer.content) == (200, b'{"ok":true}')
    assert server.connections == 1
    head, _, body = server.requests[2].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /batch HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json" in head and b"\r\nContent-Length: 7" in head
    assert body == b'{"n":2}'
    server.close()


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(transport: Transport) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    )
    server = RawServer(lambda request: chunked)
    assert transport.post(server.url, b"{}", {}).content == b"hello world"
    assert transport.post(server.url, b"{}", {}).text == "hello world"
    assert server.connections == 1
    server.close()


def test_an_answer_that_ends_with_the_connection(transport: Transport) -> None:
    server = RawServer(
        lambda request: b"HTTP/1.0 503 Busy\r\nRetry-After: 7\r\nConnection: close\r\n\r\nbusy"
    )
    answer = transport.post(server.url, b"{}", {})
    assert (answer.status_code, answer.headers["retry-after"], answer.content) == (503, "7", b"busy")
    assert transport.post(server.url, b"{}", {}).status_code == 503
    assert server.connections == 2
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced(transport: Transport) -> None:
    server = RawServer(_ok(), close_idle=True)  # answers as if it kept the connection, then closes it
    first = transport.post(server.url, b"{}", {})
    _poll(lambda: server.closed == 1)
    second = transport.post(server.url, b"{}", {})
    assert first.status_code == second.status_code == 200
    assert len(server.requests) == 2  # neither request was sent twice


def test_a_gzip_answer_is_decompressed_and_a_1xx_skipped(transport: Transport) -> None:
    body = gzip.compress(b'{"results":[]}')
    server = RawServer(
        lambda request: b"HTTP/1.1 100 Continue\r\n\r\n" + _answer(body, b"Content-Encoding: gzip\r\n")
    )
    assert transport.post(server.url, b"{}", {}).content == b'{"results":[]}'
    server.close()


def test_errors_are_httpx_classes(transport: Transport) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        transport.post(f"http://127.0.0.1:{port}/", b"{}", {})
    silent = RawServer(lambda request: None)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        transport.post(silent.url, b"{}", {})
    with pytest.raises(httpx.LocalProtocolError):
        transport.post(silent.url, b"{}", {"X-Bad": "a\r\nInjected: yes"})
    assert len(silent.requests) == 1
    silent.close()
    hanging = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    quick = Transport(timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        quick.post(f"http://127.0.0.1:{hanging.getsockname()[1]}/", b"{}", {})
    quick.close()
    hanging.close()


def test_a_proxy_in_the_environment_is_honoured_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = RawServer(_ok(b"via proxy"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = Transport(timeout=2.0)
    assert proxied.post("http://receiver.example:8080/batch", b"{}", {}).content == b"via proxy"
    assert proxy.requests[0].startswith(b"POST http://receiver.example:8080/batch HTTP/1.1")
    proxied.close()
    proxy.close()


def test_https_verifies_the_receivers_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, served = self_signed(tmp_path)
    server = RawServer(_ok(b"over tls"), tls=served)
    _tls_context.cache_clear()  # the certificates are found once a process
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            Transport(timeout=2.0).post(server.url, b"{}", {})  # not in certifi's bundle
        _tls_context.cache_clear()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = Transport(timeout=2.0)
        assert trusting.post(server.url, b"{}", {}).content == b"over tls"
        assert trusting.post(server.url, b"{}", {}).content == b"over tls"
        assert server.connections == 2  # the refused one, then one kept alive for both
        trusting.close()
    finally:
        _tls_context.cache_clear()
        server.close()

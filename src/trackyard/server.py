"""The HTTP server trackyard runs on (uvicorn with uvloop and httptools), set up in one place.

Two things are added to uvicorn here. A request head is bounded in size (431) and in the
time it may take to arrive, so a slowloris cannot hold connections open. A graceful stop
(SIGTERM) exits with status 0 once in-flight requests are answered and committed, where
uvicorn would re-raise the signal. The benchmark's ceiling apps run through the same
functions, so they are measured on the very same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Generator
from functools import cache

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trackyard.config import Settings

_HEAD_TOO_LARGE = (
    b'{"success": false, "code": "headers_too_large", "message": "The request head is too large."}'
)


@cache
def _limits() -> tuple[int, int]:
    # Read once per process, from the TRACKYARD_* variables `trackyard serve` exports.
    settings = Settings.from_env()
    return settings.header_timeout_seconds, settings.max_head_bytes


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size limit on every request head."""

    _head_timer: asyncio.TimerHandle | None = None
    #: Two counts of the current head, each never more than its true size, so the limit
    #: holds however TCP cuts the head: what the parser has parsed (URL and headers, even
    #: when a whole head came in one chunk), and the chunks that left the head incomplete
    #: (a header the parser is still buffering).
    _parsed_bytes = 0
    _chunk_bytes = 0
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def _start_head(self) -> None:
        self._parsed_bytes = self._chunk_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(_limits()[0], self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _end_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _check_head(self) -> None:
        """Past the limit, answer 431 and drop the connection."""
        if max(self._parsed_bytes, self._chunk_bytes) <= _limits()[1] or self._refused:
            return
        self._refused = True
        self._end_head()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: "
            + str(len(_HEAD_TOO_LARGE)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + _HEAD_TOO_LARGE
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._head_timer is not None
        super().data_received(data)
        if in_head and self._head_timer is not None and not self.transport.is_closing():
            self._chunk_bytes += len(data)
            self._check_head()

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        self._check_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value)
        self._check_head()
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """As uvicorn's, except that a graceful stop is a clean exit: the signal is not re-raised."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen; port 0 lets the kernel pick a free port (read it from getsockname)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(
    app: str, sock: socket.socket, *, workers: int = 1, log_level: str = "warning", factory: bool = False
) -> None:
    """Serve the ASGI app named by the import string ``app`` on ``sock`` until SIGTERM or SIGINT."""
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,
        factory=factory,
        workers=workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        _Server(config).run(sockets=[sock])

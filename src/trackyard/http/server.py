"""The HTTP server trackyard runs on (uvicorn with uvloop and httptools), set up in one place.

Two things are added to uvicorn here. A request head is bounded in size (431) and in the
time it may take to arrive, and a request body in the time it may take to arrive (408), so
a slowloris cannot hold connections open. A graceful stop
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
from collections.abc import Callable, Generator
from functools import cache
from types import FrameType
from typing import NamedTuple, cast

import uvicorn
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors.multiprocess import Multiprocess

from trackyard.config import LogFormat, Settings
from trackyard.http.answers import error_body
from trackyard.http.collection import cors_headers
from trackyard.logs import logging_config
from trackyard.metrics.processes import worker_exited

_HEAD_TOO_LARGE = error_body("headers_too_large", "The request head is too large.")
_BODY_TOO_SLOW = error_body("request_timeout", "The request body took too long to arrive.")


class _Limits(NamedTuple):
    head_timeout: float
    head_bytes: int
    body_timeout: float


@cache
def _limits() -> _Limits:
    # Read once per process, from the TRACKYARD_* variables `trackyard serve` exports.
    settings = Settings.from_env()
    return _Limits(
        float(settings.header_timeout_seconds), settings.max_head_bytes, float(settings.body_timeout_seconds)
    )


class _OneSendResponse:
    """The transport one request's cycle writes through: it holds the response head back
    until the first body write, so a whole small response leaves in one ``send()`` (one
    syscall per request saved, about 5 µs here) and in one TCP segment.

    Every app here sends a response's head and body in one step, with no await between
    them, so the head is never held while anything else could write. Nothing else is held:
    a ``100 Continue`` (written before the response starts) goes out at once, as does a
    HEAD request's head, which no body write follows, and one written while the socket's
    buffer is full (the body then waits for the buffer to drain).
    """

    __slots__ = ("_cycle", "_head", "_transport", "_waiting")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._waiting = cycle.scope["method"] != "HEAD"

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data = self._head + data
            self._head = None
        elif self._waiting and self._cycle.response_started:
            # The first write once the response has started is its head.
            self._waiting = False
            if not self._cycle.flow.write_paused:
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with deadlines on every request head and body, and a
    size limit on every head.

    A deadline's timer starts only once a head or body is still incomplete after the chunk
    that began it, so a request that arrives in one piece (nearly all of them) costs no
    timer at all. The body deadline lives here, per connection, rather than around each
    ``receive()`` in the app, so a late body is answered the same way whichever route it is for.
    """

    #: From the first byte of a request (or from the connection) until its head is parsed.
    _in_head = True
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    #: Two counts of the current head, each never more than its true size, so the limit
    #: holds however TCP cuts the head: what the parser has parsed (URL and headers, even
    #: when a whole head came in one chunk), and the chunks that left the head incomplete
    #: (a header the parser is still buffering).
    _parsed_bytes = 0
    _chunk_bytes = 0
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # No byte may ever come: the deadline starts with the connection.
        self._start_head_timer()

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(_limits().head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _check_head(self) -> None:
        """Past the limit, answer 431 and drop the connection."""
        if max(self._parsed_bytes, self._chunk_bytes) <= _limits().head_bytes or self._refused:
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

    def _start_body(self) -> None:
        """Start the body deadline if a running request's body has not fully arrived.

        Only the last request parsed can be missing body bytes, and while it waits behind
        a pipelined one its deadline has not started (as its app has not either).
        """
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.more_body
            or cycle.response_complete
            or self.pipeline
            or self.transport.is_closing()
        ):
            return
        self._body_timer = self.loop.call_later(_limits().body_timeout, self._body_expired)

    def _end_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_expired(self) -> None:
        """Answer 408 and close; the app sees the client go, as if it had hung up."""
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_started or self.transport.is_closing():
            return
        head = [STATUS_LINE[408]]
        for name, value in [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BODY_TOO_SLOW)).encode()),
            (b"connection", b"close"),
            # Readable by a browser SDK, as every collection answer is; it holds no data.
            *cors_headers(cast(Scope, cycle.scope)),
        ]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", _BODY_TOO_SLOW]))
        # Whatever the app still sends for this request is dropped, and its receive() says
        # http.disconnect: the request ends like one whose client hung up.
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._in_head
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            if in_head:
                self._chunk_bytes += len(data)
                self._check_head()
            if self._head_timer is None and not self._refused:
                self._start_head_timer()
        elif self._body_timer is None:
            self._start_body()

    # The head limit is checked only once a count passes it: these run for every header.
    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        if self._parsed_bytes > _limits().head_bytes:
            self._check_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value)
        if self._parsed_bytes > _limits().head_bytes:
            self._check_head()
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._parsed_bytes = self._chunk_bytes = 0

    def on_headers_complete(self) -> None:
        self._end_head()
        if self._refused:
            return
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            cycle.transport = _OneSendResponse(self.transport, cycle)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._end_body()
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._end_body()
        super().on_response_complete()
        # A pipelined request may have started, with its body still to come.
        self._start_body()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        self._end_body()
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    #: Called on the first SIGTERM or SIGINT, so what runs beside the server stops with it.
    on_stop: Callable[[], None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.on_stop is not None:
            self.on_stop()
        super().handle_exit(sig, frame)

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


class _Multiprocess(Multiprocess):
    """uvicorn's worker supervisor, telling ``on_stop`` when a stop signal arrives."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], on_stop: Callable[[], None] | None
    ):
        super().__init__(config, sockets)
        self._on_stop = on_stop

    def handle_int(self) -> None:
        if self._on_stop is not None:
            self._on_stop()
        super().handle_int()

    def handle_term(self) -> None:
        if self._on_stop is not None:
            self._on_stop()
        super().handle_term()

    def keep_subprocess_alive(self) -> None:
        """As uvicorn's (a dead worker is replaced), dropping the dead one's live metrics."""
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                worker_exited(pid)


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
    app: str,
    sock: socket.socket,
    *,
    workers: int = 1,
    log_level: str = "warning",
    log_format: LogFormat = "text",
    access_log: bool = False,
    factory: bool = False,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve the ASGI app named by the import string ``app`` on ``sock`` until SIGTERM or SIGINT.

    ``log_format`` and ``access_log`` set up every worker's logging (``trackyard.logs``).
    ``on_stop`` is called (in a signal handler: it must only set a flag) as soon as a stop
    signal arrives, before in-flight requests have finished.
    """
    config = uvicorn.Config(
        app,
        factory=factory,
        workers=workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=logging_config(log_level, log_format, access_log=access_log),
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    if workers > 1:
        _Multiprocess(config, [sock], on_stop).run()
    else:
        single = _Server(config)
        single.on_stop = on_stop
        single.run(sockets=[sock])

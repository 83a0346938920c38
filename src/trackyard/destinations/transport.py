"""Posting a destination's requests: a lean HTTP/1.1 client, one kept-alive connection a host.

Why not httpx for every request: a Koala request carries one person's events, so with
many people most requests carry a few events, and httpx's own work for a request (its URL
parsing, cookies, h11's validation: about 500 µs of CPU here) was most of a delivered
event's CPU. This client writes a request's head and body with one ``sendall`` and reads
the answer with a buffered reader: status line, headers, then a ``Content-Length`` body,
a chunked body, or one that ends with the connection. A kept-alive connection that the
server closed while idle (readable before a request) is replaced before it is used, as
httpx does; a request is never sent twice by this client (the sink's retries are the only ones).

Errors are raised as httpx's exception classes (``ConnectError``, ``ReadTimeout``, …), so
the status classes and the last errors of ``destinations show`` read as before. Where an
HTTP proxy is set in the environment (``HTTPS_PROXY``, ``ALL_PROXY``, …) and ``NO_PROXY``
does not exempt the host, requests go through httpx, which honours it.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from io import BufferedReader
from typing import NamedTuple
from urllib.parse import urlsplit

import certifi
import httpx

from trackyard import __version__

#: The longest status or header line read (as http.client's limit).
_MAX_LINE = 65536
_MAX_HEADERS = 100
_NO_BODY = frozenset({204, 304})
_LINE_BREAK = re.compile("[\r\n\0]")


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver's answer: its status, headers (names in lower case) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Target(NamedTuple):
    """What a URL's requests need: the connection's address and the request line's parts."""

    tls: bool
    host: str
    port: int
    path: str
    host_header: str
    #: Go through httpx (an HTTP proxy applies to this URL).
    proxied: bool


@lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol or no host: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = parts.port is None or parts.port == (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if default_port else f"{shown}:{port}"
    return _Target(tls, host, port, path, host_header, _proxied(parts.scheme, host))


def _proxied(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Certificates as httpx finds them: ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


class _Connection:
    """One kept-alive connection to a host."""

    def __init__(self, target: _Target, timeout: float) -> None:
        try:
            sock = socket.create_connection((target.host, target.port), timeout)
        except TimeoutError as error:
            raise httpx.ConnectTimeout(str(error) or "timed out") from None
        except OSError as error:
            raise httpx.ConnectError(str(error)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            try:
                sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
            except TimeoutError as error:
                sock.close()
                raise httpx.ConnectTimeout(str(error) or "timed out") from None
            except OSError as error:  # ssl.SSLError included
                sock.close()
                raise httpx.ConnectError(str(error)) from None
        self.sock = sock
        self._reader: BufferedReader = sock.makefile("rb")

    def stale(self) -> bool:
        """Readable while no request is out: the server closed it (or sent what it should not)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def exchange(self, head: bytes, body: bytes) -> tuple[Answer, bool]:
        """Send one request, read its answer; and whether the connection may be used again.

        A receiver may answer before it has read the whole body (a 413) and close: a failed
        write still reads what it answered, as httpx does, and only without one is it a
        ``WriteError``."""
        unsent: OSError | None = None
        try:
            self.sock.sendall(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.sock.sendall(body)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out") from None
        except OSError as error:
            unsent = error
        try:
            answer, reusable = self._answer()
        except (OSError, httpx.RemoteProtocolError) as error:
            if unsent is not None:
                raise httpx.WriteError(str(unsent)) from None
            if isinstance(error, TimeoutError):
                raise httpx.ReadTimeout("timed out") from None
            if isinstance(error, OSError):
                raise httpx.ReadError(str(error)) from None
            raise
        return answer, reusable and unsent is None

    def _answer(self) -> tuple[Answer, bool]:
        while True:
            version, status = self._status_line()
            headers = self._headers()
            if not 100 <= status <= 199:
                break  # 1xx (100 Continue, 103 Early Hints): the real answer follows
        connection = headers.get("connection", "").lower()
        reusable = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if status in _NO_BODY:
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = self._chunked()
        elif "content-length" in headers:
            content = self._exactly(_length(headers["content-length"]))
        else:  # the body ends with the connection
            content, reusable = self._reader.read(), False
        return Answer(status, headers, _decoded(content, headers.get("content-encoding", ""))), reusable

    def _line(self) -> bytes:
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise httpx.RemoteProtocolError("a line of the answer is too long")
        return line

    def _status_line(self) -> tuple[str, int]:
        line = self._line()
        if not line:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP status line: {line[:100]!r}")
        return version, int(code)

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected in the middle of the headers.")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise httpx.RemoteProtocolError(f"not a header line: {line[:100]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise httpx.RemoteProtocolError(f"more than {_MAX_HEADERS} headers in the answer")

    def _exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) < size:
            raise httpx.RemoteProtocolError(
                f"Server disconnected after {len(data)} of {size} bytes of the body."
            )
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"not a chunk size: {size_line[:100]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers: not used
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._line()  # the CRLF after the chunk

    def close(self) -> None:
        self._reader.close()
        self.sock.close()


def _length(value: str) -> int:
    try:
        length = int(value.split(",")[0])
    except ValueError:
        raise httpx.RemoteProtocolError(f"not a Content-Length: {value[:100]!r}") from None
    if length < 0:
        raise httpx.RemoteProtocolError(f"a negative Content-Length: {length}")
    return length


def _decoded(content: bytes, encoding: str) -> bytes:
    """The body as sent before compression (no Accept-Encoding is sent, but a server may)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(content)
    except zlib.error as error:
        raise httpx.DecodingError(f"a {encoding} body that does not decompress: {error}") from None
    return content


def _head(target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    fields = {"host": ("Host", target.host_header), "accept": ("Accept", "*/*")}
    fields["user-agent"] = ("User-Agent", f"trackyard/{__version__}")
    for name, value in headers.items():
        fields[name.lower()] = (name, value)
    fields["content-length"] = ("Content-Length", str(len(body)))
    lines = [f"POST {target.path} HTTP/1.1"] + [f"{name}: {value}" for name, value in fields.values()]
    if _LINE_BREAK.search("".join(lines)):
        raise httpx.LocalProtocolError("a header name or value holds a line break")
    text = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header holds a character outside Latin-1") from None


class Transport:
    """Posts requests, keeping one connection a host open between them (not thread-safe:
    one a sending thread)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._connections: dict[tuple[bool, str, int], _Connection] = {}
        self._httpx: httpx.Client | None = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        target = _target(url)
        if target.proxied:
            return self._through_httpx(url, body, headers)
        head = _head(target, body, headers)
        key = (target.tls, target.host, target.port)
        connection = self._connections.pop(key, None)
        if connection is not None and connection.stale():
            connection.close()
            connection = None
        if connection is None:
            connection = _Connection(target, self._timeout)
        try:
            answer, reusable = connection.exchange(head, body)
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._connections[key] = connection
        else:
            connection.close()
        return answer

    def _through_httpx(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._httpx is None:
            self._httpx = httpx.Client(timeout=self._timeout)
        response = self._httpx.post(url, content=body, headers=dict(headers))
        return Answer(response.status_code, dict(response.headers), response.content)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        if self._httpx is not None:
            self._httpx.close()

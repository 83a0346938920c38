"""Posting a destination's requests over the standard library's ``http.client``, one
kept-alive connection a host.

Why not httpx for every request: a Koala request carries one person's events, so with
many people most requests carry a few events, and httpx's own work for a request (its URL
parsing, cookies, h11's validation: about 400-600 µs of CPU here) was most of a delivered
event's CPU; ``http.client`` (what urllib and urllib3 stand on) does the same exchange in
about a fifth of that (``tests/destinations/test_transport.py`` holds the behaviours; the
figures are in docs/performance.md). A kept-alive connection that the server closed while
idle (readable before a request) is replaced before it is used, as httpx does; a request is
never sent twice by this client (the sink's retries are the only ones).

Errors are raised as httpx's exception classes (``ConnectError``, ``ReadTimeout``, …), so
the status classes and the last errors of ``destinations show`` read as before. Where an
HTTP proxy is set in the environment (``HTTPS_PROXY``, ``ALL_PROXY``, …) and ``NO_PROXY``
does not exempt the host, requests go through httpx, which honours it.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import certifi
import httpx

from trackyard import __version__

_USER_AGENT = f"trackyard/{__version__}"


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
    """What a URL's requests need: the connection's address and the request's path."""

    tls: bool
    host: str
    port: int
    path: str
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
    return _Target(tls, parts.hostname, port, path, _proxied(parts.scheme, parts.hostname))


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


def _open(target: _Target, timeout: float) -> http.client.HTTPConnection:
    """A connected connection; a failure to connect (TLS included) is httpx's ``ConnectError``."""
    connection: http.client.HTTPConnection
    if target.tls:
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.connect()
    except TimeoutError as error:
        connection.close()
        raise httpx.ConnectTimeout(str(error) or "timed out") from None
    except OSError as error:  # ssl.SSLError (a certificate refused) included
        connection.close()
        raise httpx.ConnectError(str(error)) from None
    assert connection.sock is not None
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _stale(connection: http.client.HTTPConnection) -> bool:
    """Closed by ``http.client`` after an answer that ended the connection, or readable while
    no request is out: the server closed it (or sent what it should not)."""
    sock = connection.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _exchange(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: Mapping[str, str]
) -> Answer:
    """Send one request and read its answer, with ``http.client``'s errors as httpx's.

    A receiver may answer before it has read the whole body (a 413) and close: a failed
    write still reads what it answered, as httpx does, and only without one is it a
    ``WriteError``."""
    fields = {"User-Agent": _USER_AGENT, "Accept": "*/*", **headers}
    unsent: OSError | None = None
    try:
        connection.request("POST", path, body, fields)
    except ValueError as error:  # a header holding a line break or a character outside Latin-1
        raise httpx.LocalProtocolError(str(error)) from None
    except TimeoutError:
        raise httpx.WriteTimeout("timed out") from None
    except OSError as error:
        unsent = error
    try:
        response = connection.getresponse()
        content = response.read()
    except http.client.RemoteDisconnected as error:
        if unsent is not None:
            raise httpx.WriteError(str(unsent)) from None
        message = f"Server disconnected without sending a response ({error})."
        raise httpx.RemoteProtocolError(message) from None
    except TimeoutError:
        raise httpx.ReadTimeout("timed out") from None
    except (http.client.HTTPException, OSError) as error:
        if unsent is not None:
            raise httpx.WriteError(str(unsent)) from None
        kind = httpx.ReadError if isinstance(error, OSError) else httpx.RemoteProtocolError
        raise kind(str(error) or type(error).__name__) from None
    answer_headers: dict[str, str] = {}
    for name, value in response.getheaders():
        name = name.lower()
        answer_headers[name] = f"{answer_headers[name]}, {value}" if name in answer_headers else value
    if unsent is not None:
        connection.close()  # the body was not all sent: the connection is in no state to reuse
    content = _decoded(content, answer_headers.get("content-encoding", ""))
    return Answer(response.status, answer_headers, content)


def _decoded(content: bytes, encoding: str) -> bytes:
    """The body as sent before compression (no compression is asked for, but a server may)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(content)
    except zlib.error as error:
        raise httpx.DecodingError(f"a {encoding} body that does not decompress: {error}") from None
    return content


class Transport:
    """Posts requests, keeping one connection a host open between them (not thread-safe:
    one a sending thread)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._connections: dict[tuple[bool, str, int], http.client.HTTPConnection] = {}
        self._httpx: httpx.Client | None = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        target = _target(url)
        if target.proxied:
            return self._through_httpx(url, body, headers)
        key = (target.tls, target.host, target.port)
        connection = self._connections.pop(key, None)
        if connection is not None and _stale(connection):
            connection.close()
            connection = None
        if connection is None:
            connection = _open(target, self._timeout)
        try:
            answer = _exchange(connection, target.path, body, headers)
        except BaseException:
            connection.close()
            raise
        if connection.sock is not None:  # http.client closes it after an answer that ends it
            self._connections[key] = connection
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

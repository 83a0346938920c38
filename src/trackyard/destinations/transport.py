"""Posting a destination's requests with libcurl (pycurl): one reused handle, and so one
kept-alive connection, a host.

Why libcurl: a Koala request carries one person's events, so with many people most
requests carry a few events and the client's own work for a request is much of a delivered
event's CPU: httpx spent about 400-600 µs of CPU a request here, ``http.client`` 240-320,
libcurl 105-140 (docs/performance.md). libcurl frames the request, reads the answer
(``Content-Length``, chunked, or until the connection closes, 1xx answers skipped), keeps
the connection, verifies TLS and goes through a proxy; what stays here is choosing the
options, the answer's headers and body, and naming errors.

A kept-alive connection that the server closed while idle (readable before a request) is
replaced before it is used: libcurl checks it, as the ``http.client`` client did. One case
differs: when a reused connection dies after the request was sent and before any byte of
an answer, libcurl sends the request once more on a new connection. The receiver may then
have had it twice; delivery is at least once anyway (the sink's retries, a crash), and a
receiver that dedups stores it once (docs/destinations.md, "The messageId").

The destination's timeout bounds connecting and the attempt as a whole (libcurl's
``TIMEOUT_MS``: it has no timeout for each wait on the socket, as ``http.client`` had); a
receiver that does not answer is a ``ReadTimeout`` after that long.

Errors are raised as httpx's exception classes (``ConnectError``, ``ReadTimeout``, …), so
the status classes and the last errors of ``destinations show`` read as before. A proxy
is taken from the environment as before (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
lower case too, unless ``NO_PROXY`` exempts the host) and given to libcurl explicitly.
"""

from __future__ import annotations

import os
import re
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import certifi
import httpx
import pycurl

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
    """What a URL's handle needs: the host it is for, and the proxy to go through ("": none)."""

    key: tuple[str, str, int]
    proxy: str


@lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol or no host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _Target((parts.scheme, parts.hostname, port), _proxy(parts.scheme, parts.hostname))


def _proxy(scheme: str, host: str) -> str:
    """The proxy the environment sets for ``scheme`` and ``host`` (urllib's reading of it, as
    before); "" for none, which also keeps libcurl from reading the environment its own way."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all") or ""
    return "" if not proxy or urllib.request.proxy_bypass(host) else proxy


@lru_cache(maxsize=1)
def _tls_context() -> tuple[str | None, str | None]:
    """The certificates, as httpx finds them: ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's
    bundle (file, directory)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return cafile or None, capath or None
    return certifi.where(), None


#: What a header name may be (http.client's rule): no colon, no white space to start with.
_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")
_DEFAULTS = {"user-agent": f"User-Agent: {_USER_AGENT}", "accept": "Accept: */*"}
_DEFAULTS_OR_NONE = {
    **_DEFAULTS,
    # libcurl would send a form type with a body of no stated type, http.client sent none;
    # http.client sent ``identity``, which says no compression is wanted.
    "content-type": "Content-Type:",
    "accept-encoding": "Accept-Encoding: identity",
}


@lru_cache(maxsize=256)
def _header_lines(headers: tuple[tuple[str, str], ...]) -> list[bytes]:
    """The request's header lines for libcurl: the destination's, the defaults it does not
    set, and an empty ``Expect`` (libcurl would ask for ``100-continue`` before a body over
    1 KB and wait for it). A line break in a header is httpx's ``LocalProtocolError``."""
    lines: list[bytes] = []
    named: set[str] = set()
    for name, value in headers:
        if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise httpx.LocalProtocolError(f"Invalid header {name!r}: {value!r}")
        # "Name:" would take a header of libcurl's away; "Name;" is how it sends an empty one.
        line = f"{name}: {value}" if value.strip() else f"{name};"
        try:
            lines.append(line.encode("latin-1"))
        except UnicodeEncodeError as error:
            raise httpx.LocalProtocolError(f"Invalid header {name!r}: {error}") from None
        named.add(name.lower())
    lines += [line.encode() for name, line in _DEFAULTS_OR_NONE.items() if name not in named]
    if "expect" not in named:
        lines.append(b"Expect:")
    return lines


class _Handle:
    """One host's libcurl handle (its connection cache holds the kept-alive connection) and
    the buffers its answers are written to."""

    def __init__(self, target: _Target, timeout: float) -> None:
        self.body: list[bytes] = []
        self.head: list[bytes] = []
        #: The header lines and URL last set on the handle (libcurl keeps them between requests).
        self._lines: list[bytes] | None = None
        self._url = ""
        curl = self.curl = pycurl.Curl()
        milliseconds = max(int(timeout * 1000), 1)
        # Connecting (TLS included) within the timeout; the whole exchange too, so a receiver
        # that does not answer is a ReadTimeout after that long.
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, milliseconds)
        curl.setopt(pycurl.TIMEOUT_MS, milliseconds)
        curl.setopt(pycurl.NOSIGNAL, 1)  # libcurl's timeouts without signals: threads send
        curl.setopt(pycurl.TCP_NODELAY, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.PATH_AS_IS, 1)  # the path as the destination wrote it
        curl.setopt(pycurl.PROXY, target.proxy)
        cafile, capath = _tls_context()
        for file_option, path_option in (
            (pycurl.CAINFO, pycurl.CAPATH),
            (pycurl.PROXY_CAINFO, pycurl.PROXY_CAPATH),
        ):
            if cafile:
                curl.setopt(file_option, cafile)
            else:  # not libcurl's built-in bundle either: only the directory asked for
                curl.unsetopt(file_option)
            if capath:
                curl.setopt(path_option, capath)
        curl.setopt(pycurl.WRITEFUNCTION, self.body.append)
        curl.setopt(pycurl.HEADERFUNCTION, self.head.append)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        curl = self.curl
        lines = _header_lines(tuple(headers.items()))
        if lines is not self._lines:  # a destination's requests mostly share their headers
            curl.setopt(pycurl.HTTPHEADER, lines)
            self._lines = lines
        if url != self._url:
            curl.setopt(pycurl.URL, url)
            self._url = url
        curl.setopt(pycurl.POSTFIELDS, body)
        try:
            curl.perform()
        except pycurl.error as error:
            raise _named(curl, error, len(body)) from None
        else:
            answer_headers = _headers(self.head)
            content = _decoded(b"".join(self.body), answer_headers.get("content-encoding", ""))
            return Answer(curl.getinfo(pycurl.RESPONSE_CODE), answer_headers, content)
        finally:
            self.head.clear()
            self.body.clear()


def _headers(lines: list[bytes]) -> dict[str, str]:
    """The final answer's headers (a 1xx answer's, or a proxy's to ``CONNECT``, came before it):
    names in lower case, repeats joined by ", ", a folded line joined to the one before."""
    headers: dict[str, str] = {}
    last = ""
    for raw in lines:
        line = raw.decode("latin-1")
        if line.startswith("HTTP/"):
            headers.clear()
        elif line[:1] in (" ", "\t") and last:
            headers[last] = f"{headers[last]} {line.strip()}"
        elif ":" in line:
            name, _, value = line.partition(":")
            last, value = name.strip().lower(), value.strip()
            headers[last] = f"{headers[last]}, {value}" if last in headers else value
    return headers


#: libcurl's error codes -> httpx's class for them (timeouts and TLS apart, below).
_ERRORS: dict[int, type[httpx.TransportError]] = {
    pycurl.E_UNSUPPORTED_PROTOCOL: httpx.UnsupportedProtocol,
    pycurl.E_URL_MALFORMAT: httpx.UnsupportedProtocol,
    pycurl.E_COULDNT_RESOLVE_PROXY: httpx.ConnectError,
    pycurl.E_COULDNT_RESOLVE_HOST: httpx.ConnectError,
    pycurl.E_COULDNT_CONNECT: httpx.ConnectError,
    pycurl.E_FTP_WEIRD_SERVER_REPLY: httpx.RemoteProtocolError,  # 8, pycurl's old name for it
    pycurl.E_PARTIAL_FILE: httpx.RemoteProtocolError,  # the body ended before its length
    pycurl.E_HTTP2: httpx.RemoteProtocolError,
    pycurl.E_GOT_NOTHING: httpx.RemoteProtocolError,
    pycurl.E_SEND_ERROR: httpx.WriteError,
    pycurl.E_RECV_ERROR: httpx.ReadError,
}
#: TLS failures while connecting: a certificate refused, a handshake that failed.
_TLS_ERRORS = frozenset(
    getattr(pycurl, name)
    for name in (
        "E_SSL_CONNECT_ERROR",
        "E_PEER_FAILED_VERIFICATION",
        "E_SSL_CACERT",
        "E_SSL_CERTPROBLEM",
        "E_SSL_CIPHER",
        "E_SSL_CACERT_BADFILE",
        "E_SSL_ISSUER_ERROR",
        "E_SSL_PINNEDPUBKEYNOTMATCH",
        "E_SSL_INVALIDCERTSTATUS",
    )
    if hasattr(pycurl, name)
)
_VERIFY_FAILED = frozenset(
    getattr(pycurl, name) for name in ("E_PEER_FAILED_VERIFICATION", "E_SSL_CACERT") if hasattr(pycurl, name)
)
#: libcurl's words for a timeout before the connection was made (name, TCP, TLS).
_CONNECT_TIMEOUT = (
    "Resolving timed out",
    "Connection timed out",
    "connect() timed out",
    "SSL connection timeout",
)


def _named(curl: pycurl.Curl, error: pycurl.error, body_size: int) -> httpx.TransportError:
    """libcurl's error as httpx's class for it, with libcurl's words."""
    if len(error.args) != 2:  # (message,): pycurl refused an argument, nothing was sent
        return httpx.LocalProtocolError(str(error.args[0]))
    code, message = error.args
    if code == pycurl.E_OPERATION_TIMEDOUT:
        if message.startswith(_CONNECT_TIMEOUT):
            return httpx.ConnectTimeout(message)
        if curl.getinfo(pycurl.SIZE_UPLOAD_T) < body_size:
            return httpx.WriteTimeout(message)
        return httpx.ReadTimeout(message)
    if code == pycurl.E_GOT_NOTHING:
        return httpx.RemoteProtocolError(f"Server disconnected without sending a response ({message}).")
    if code in _VERIFY_FAILED:  # the words Python's ssl (and so httpx) used, then libcurl's
        return httpx.ConnectError(f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    if code in _TLS_ERRORS:
        return httpx.ConnectError(message)
    if code == pycurl.E_RECV_ERROR and "from proxy after CONNECT" in message:
        return httpx.ProxyError(message)
    return _ERRORS.get(code, httpx.TransportError)(f"{message} (libcurl error {code})")


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
    """Posts requests, with one libcurl handle (and kept-alive connection) a host (not
    thread-safe: one a sending thread)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._handles: dict[tuple[str, str, int], _Handle] = {}

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        target = _target(url)
        handle = self._handles.get(target.key)
        if handle is None:
            handle = self._handles[target.key] = _Handle(target, self._timeout)
        return handle.post(url, body, headers)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.curl.close()
        self._handles.clear()

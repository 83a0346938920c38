"""Malformed requests for every route of the four formats, and what an answer must look like.

Shared by the pytest fuzz tests and ``scripts/faults.py``. A case is a route, a body and
headers; the body is drawn from hostile shapes (broken or truncated JSON, invalid UTF-8,
deep nesting, huge numbers, NaN/Infinity, duplicate keys, gzip bombs, truncated gzip,
valid JSON of the wrong shape) and sent with a right, wrong or missing key, a random
Content-Type and sometimes an enormous header.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from trackyard.config import Settings


@dataclass(frozen=True)
class Route:
    method: str
    #: ``{key}`` is replaced by the write key (right or wrong).
    path: str
    #: Whose error form the answers use: segment, koala, bloomreach, vitally, admin, pixel.
    form: str
    #: How the key travels: basic (username), token, vitally (bare Basic), path, query, none.
    auth: str


_SEGMENT_CALLS = ["identify", "track", "page", "screen", "group", "alias", "i", "t", "p", "s", "g", "a"]
_BR = "/track/v2/projects/{key}"

ROUTES: tuple[Route, ...] = (
    *(Route("POST", f"/v1/{call}", "segment", "basic") for call in _SEGMENT_CALLS),
    *(Route("POST", path, "segment", "basic") for path in ("/v1/batch", "/v1/b", "/v1/import")),
    Route("POST", "/beacon/v1/batch?writeKey={key}", "segment", "query"),
    Route("POST", "/v1/m", "segment", "none"),
    Route("GET", "/v1/pixel/track?writeKey={key}&data={data}", "pixel", "query"),
    Route("GET", "/v1/projects/{key}/settings", "segment", "path"),
    Route("POST", "/web/projects/{key}/batch", "koala", "path"),
    Route("POST", "/web/projects/{key}/accounts/batch", "koala", "path"),
    Route("GET", "/web/projects/{key}/auth", "koala", "path"),
    *(
        Route("POST", f"{_BR}{path}", "bloomreach", "token")
        for path in ("/customers", "/customers/events", "/campaigns/clicks", "/batch")
    ),
    Route("GET", f"{_BR}/system/time", "bloomreach", "token"),
    Route("POST", "/analytics/v1/batch", "vitally", "vitally"),
    *(
        Route("POST", f"/analytics/v1/{kind}", "vitally", "vitally")
        for kind in ("organization", "account", "user", "track", "unlink", "customobjectinstance")
    ),
    Route("GET", "/v1/events?after={data}", "admin", "none"),
    Route("GET", "/v1/sources", "admin", "none"),
)


@cache
def gzip_bomb() -> bytes:
    """64 MB of JSON-ish zeros in about 64 KB of gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"0" * (1 << 20)
    return b"".join(
        [compressor.compress(b'{"batch": [')] + [compressor.compress(chunk) for _ in range(64)]
    ) + (compressor.flush())


_SAMPLE = msgspec.json.encode(
    {
        "type": "track",
        "userId": "u",
        "event": "E",
        "messageId": "m",
        "batch": [{"type": "track", "userId": "u", "event": "E"}],
        "commands": [{"name": "customers/events", "data": {"customer_ids": {"registered": "u"}}}],
        "profile_id": "p",
        "events": [{"type": "track", "event": "E"}],
    }
)


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


_HOSTILE_LITERALS = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'"just a string"',
        b"1e999999",
        b"-1e999999",
        b'{"userId": 1e400, "event": "E"}',
        b'{"userId": "u", "event": "E", "properties": {"n": 123456789012345678901234567890123456789}}',
        b'{"userId": "u", "event": "E", "properties": {"n": NaN}}',
        b'{"userId": "u", "event": "E", "properties": {"n": Infinity, "m": -Infinity}}',
        b'{"userId": "a", "userId": 1, "event": "E", "event": null}',
        b'{"batch": [{"type": "track"}], "batch": 7}',
        b'{"userId": "\\ud800", "event": "E"}',
        b"\xef\xbb\xbf{}",
        b'{"userId": "u", "event": "E"',
        b'{"batch": [',
        b'{"commands": [{"name": "customers/events", "data": 5}]}',
        b"[" + b"{}," * 3000 + b"{}]",
    ]
)


#: Bodies msgspec refuses with something other than DecodeError: UnicodeDecodeError for invalid
#: UTF-8 inside a string, RecursionError past about 1,000 levels of nesting. Each must be a 400.
UNDECODABLE: dict[str, bytes] = {
    "invalid UTF-8 in a string": b'{"userId": "\xff\xfe", "event": "E", "batch": [], "commands": []}',
    "a UTF-8-encoded surrogate": b'{"userId": "\xed\xa0\x80", "event": "E"}',
    "invalid UTF-8 in a batch item": b'{"batch": [{"type": "track", "userId": "\xff", "event": "E"}]}',
    "invalid UTF-8 in a Vitally message": b'[{"type": "track", "userId": "\xff", "event": "E"}]',
    "invalid UTF-8 in a Bloomreach command": b'{"commands": [{"name": "customers", "data": "\xff"}]}',
    "2,000 nested arrays": b"[" * 2000 + b"]" * 2000,
    "2,000 nested objects": b'{"a":' * 2000 + b"1" + b"}" * 2000,
}


def bodies() -> st.SearchStrategy[tuple[bytes, str | None]]:
    """``(body, Content-Encoding)`` pairs, hostile in every way the issue lists."""
    plain = st.one_of(
        _HOSTILE_LITERALS,
        st.sampled_from(sorted(UNDECODABLE.values())),
        st.binary(max_size=300),
        json_objects.map(msgspec.json.encode),
        json_values.map(msgspec.json.encode),
        st.builds(
            _nested,
            st.sampled_from([64, 900, 100_000]),
            st.sampled_from(["array", "object"]),
        ),
        st.integers(1, len(_SAMPLE) - 1).map(lambda n: _SAMPLE[:n]),
        st.text(max_size=50).map(lambda t: t.encode("utf-16")),
    )
    encoded = st.one_of(
        plain.map(lambda b: (b, None)),
        plain.map(lambda b: (gzip.compress(b), "gzip")),
        plain.map(lambda b: (zlib.compress(b), "deflate")),
        st.just((gzip_bomb(), "gzip")),
        st.builds(lambda b, cut: (gzip.compress(b)[:cut], "gzip"), st.just(_SAMPLE), st.integers(1, 40)),
        st.binary(max_size=100).map(lambda b: (b, "gzip")),
        plain.map(lambda b: (b, "br")),
        plain.map(lambda b: (b, "gzip, identity")),
    )
    return encoded


_CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=latin-1",
    ]
)


@dataclass(frozen=True)
class Case:
    route: Route
    body: bytes
    encoding: str | None
    content_type: str | None
    key: str
    #: ``(name, value)`` of one extra header, sometimes enormous.
    extra: tuple[str, str] | None


def cases() -> st.SearchStrategy[Case]:
    return st.builds(
        lambda route, body, content_type, key, extra: Case(route, body[0], body[1], content_type, key, extra),
        st.sampled_from(ROUTES),
        bodies(),
        _CONTENT_TYPES,
        st.sampled_from(["RIGHT", "RIGHT", "RIGHT", "wrong-key", ""]),
        st.one_of(
            st.none(),
            st.tuples(st.just("X-Filler"), st.integers(1, 64).map(lambda kb: "v" * (kb * 1024))),
            st.just(("Cookie", "c=" + "x" * 200_000)),
        ),
    )


def build(case: Case, write_key: str) -> tuple[str, str, dict[str, str], bytes]:
    """The request for ``case``: method, path (with the query), headers, body."""
    key = write_key if case.key == "RIGHT" else case.key
    route = case.route
    data = base64.urlsafe_b64encode(case.body[:2000]).decode()
    path = route.path.replace("{key}", key or "none").replace("{data}", data)
    headers: dict[str, str] = {}
    if route.auth == "basic" and key:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    elif route.auth == "token" and key:
        headers["Authorization"] = f"Token {key}"
    elif route.auth == "vitally" and key:
        headers["Authorization"] = f"Basic {key}"
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    if case.encoding is not None:
        headers["Content-Encoding"] = case.encoding
    if case.extra is not None:
        headers[case.extra[0]] = case.extra[1]
    body = case.body if route.method == "POST" else b""
    return route.method, path, headers, body


_ERROR_KEYS: dict[str, tuple[set[str], ...]] = {
    "segment": ({"success", "code", "message"},),
    "admin": ({"success", "code", "message"},),
    "koala": ({"error", "code", "message"},),
    "bloomreach": ({"success", "error"}, {"success", "message"}),
    "vitally": ({"message", "code"},),
}


#: trackyard's default TRACKYARD_MAX_HEAD_BYTES.
MAX_HEAD_BYTES = Settings().max_head_bytes


def problem(case: Case, response: httpx.Response) -> str | None:
    """What is wrong with ``response`` as an answer to ``case``, or ``None`` when it is fine."""
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:300]!r}"
    # A head over the limit is refused before any route runs, on every route, however TCP
    # cut it. The server counts the URL and the header names and values; just under the
    # limit, the separators it also sees may tip it over, so there either answer is right.
    request = response.request
    head = len(request.url.raw_path) + sum(len(k) + len(v) for k, v in request.headers.raw)
    if status == 431:
        if head <= MAX_HEAD_BYTES - 512:
            return f"431 for a {head:,}-byte head (limit {MAX_HEAD_BYTES:,})"
        return None if response.json().get("code") == "headers_too_large" else f"431 body {response.text!r}"
    if head > MAX_HEAD_BYTES:
        return f"{status}, not 431, for a {head:,}-byte head (limit {MAX_HEAD_BYTES:,})"
    if status in (429, 503) and "retry-after" not in response.headers:
        return f"{status} without Retry-After"
    if case.route.form == "pixel":
        return (
            None
            if status == 200 and response.headers.get("content-type") == "image/gif"
            else f"pixel {status}"
        )
    if status < 400:
        return None
    # Starlette's own 404/405 (an unknown key in a path) use Segment's error form everywhere.
    forms = _ERROR_KEYS[case.route.form] + _ERROR_KEYS["segment"]
    try:
        body: Any = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return f"{status} answered with a body that is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or not any(keys <= set(body) for keys in forms):
        return f"{status} without the {case.route.form} error form: {response.text[:200]!r}"
    if not all(isinstance(body.get(k), str) and body[k] for k in ("message", "error", "code") if k in body):
        return f"{status} with an empty or non-text code/message: {response.text[:200]!r}"
    return None


def send(http: httpx.Client, case: Case, write_key: str) -> httpx.Response:
    method, path, headers, body = build(case, write_key)
    return http.request(method, path, headers=headers, content=body)


def run_http_fuzz(url: str, write_key: str, examples: int) -> tuple[int, int, list[str]]:
    """Send ``examples`` generated cases to the server at ``url``; ``(tried, 5xx, problems)``."""
    tried = 0
    fivexx = 0
    problems: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as http:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases())
        def one(case: Case) -> None:
            nonlocal tried, fivexx
            tried += 1
            try:
                response = send(http, case, write_key)
            except httpx.TimeoutException:
                problems.append(f"{case.route.path}: no answer within 30 s")
                return
            except httpx.TransportError:
                # The server may answer early (say, 401 before reading a large body) and close.
                # That is fine as long as it is still up.
                if http.get("/healthz").status_code != 200:
                    problems.append(f"{case.route.path}: the server went down")
                return
            if response.status_code >= 500:
                fivexx += 1
            if (found := problem(case, response)) is not None:
                problems.append(f"{case.route.method} {case.route.path}: {found}")

        one()
    return tried, fivexx, problems

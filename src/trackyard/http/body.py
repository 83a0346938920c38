"""Read a request body, decompressing it, and stop as soon as a limit is passed; hand it on.

Limits apply to the decoded JSON (reference segment.md 1.3 leaves this open; decoded is
what protects the server). Decompression is bounded by ``max_length``, so a gzip bomb
costs no more than the limit itself.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from trackyard.errors import IngestError
from trackyard.ingest.pipeline import Incoming

# 32 + 15: accept both gzip and zlib headers, detected automatically.
_GZIP_OR_ZLIB = 47


def too_large(limit: int, what: str) -> IngestError:
    return IngestError(
        "payload_too_large" if what == "request" else "event_too_large",
        f"The {what} is larger than {limit:,} bytes of JSON. Send fewer or smaller events per request.",
    )


async def read_body(
    chunks: AsyncIterator[bytes], content_encoding: str | None, limit: int, what: str
) -> bytes:
    """Return the decoded body, or raise ``IngestError`` once it exceeds ``limit`` bytes."""
    encoding = _normalized(content_encoding)
    if encoding in _IDENTITY:
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(limit, what)
            parts.append(chunk)
        return b"".join(parts)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise IngestError(
            "unsupported_encoding",
            f"Content-Encoding {content_encoding!r} is not supported; send gzip or an uncompressed body.",
        )
    return await _inflate(chunks, limit, what)


async def receive_body(receive: Receive, content_encoding: str | None, limit: int, what: str) -> bytes:
    """:func:`read_body`, straight from ASGI ``receive`` (no Starlette ``Request``).

    A client that hangs up raises ``ClientDisconnect``, as ``Request.stream()`` does.
    """
    if content_encoding is not None and _normalized(content_encoding) not in _IDENTITY:
        # read_body refuses an unknown encoding before it reads anything.
        return await read_body(_chunks(receive), content_encoding, limit, what)
    body, more = await _next_chunk(receive)
    if more:
        return await read_body(_chunks(receive, body), None, limit, what)
    # The usual case, a body that came in one message: no generator, no copy.
    if len(body) > limit:
        raise too_large(limit, what)
    return body


async def incoming(
    scope: Scope,
    receive: Receive,
    route: str,
    limit: int,
    what: str,
    *,
    path_key: str | None = None,
    query_key: str | None = None,
) -> Incoming:
    """The request as the ingest pipeline takes it: its body (or why it could not be read),
    its credentials as sent, and where it came from. ``query_key`` names the query
    parameter that may carry a key."""
    authorization = encoding = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-encoding" and encoding is None:
            encoding = value.decode("latin-1")
    client = scope.get("client")
    query = scope["query_string"]
    arrived = Incoming(
        route,
        b"",
        authorization,
        path_key,
        QueryParams(query).get(query_key) if query_key and query else None,
        client[0] if client else None,
    )
    try:
        arrived.body = await receive_body(receive, encoding, limit, what)
    except IngestError as error:
        arrived.unread = error
    return arrived


async def _next_chunk(receive: Receive) -> tuple[bytes, bool]:
    """The next piece of the body, and whether more follows."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            return message.get("body", b""), message.get("more_body", False)
        if kind == "http.disconnect":
            raise ClientDisconnect()


async def _chunks(receive: Receive, first: bytes = b"") -> AsyncIterator[bytes]:
    if first:
        yield first
    more = True
    while more:
        chunk, more = await _next_chunk(receive)
        if chunk:
            yield chunk


_IDENTITY = frozenset({"identity", ""})


def _normalized(content_encoding: str | None) -> str:
    return (content_encoding or "identity").strip().lower()


async def _inflate(chunks: AsyncIterator[bytes], limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj(_GZIP_OR_ZLIB)
    parts: list[bytes] = []
    size = 0
    raw = 0
    async for chunk in chunks:
        raw += len(chunk)
        # Compressed data is smaller than what it decodes to, except for tiny or random
        # input; a compressed body over the limit cannot decode to less than the limit.
        if raw > limit:
            raise too_large(limit, what)
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, limit - size + 1)
            except zlib.error as exc:
                raise _bad_gzip(str(exc)) from None
            size += len(out)
            if size > limit:
                raise too_large(limit, what)
            parts.append(out)
            if inflater.eof:
                # Concatenated gzip members are one valid stream (RFC 1952 2.2).
                data = inflater.unused_data
                if data:
                    inflater = zlib.decompressobj(_GZIP_OR_ZLIB)
            else:
                data = inflater.unconsumed_tail
    if not inflater.eof:
        raise _bad_gzip("the compressed stream ends early")
    return b"".join(parts)


def _bad_gzip(detail: str) -> IngestError:
    return IngestError("invalid_gzip", f"The body is not valid gzip ({detail}).")

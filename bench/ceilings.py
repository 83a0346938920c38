"""The ceilings trackyard is measured against, on the same HTTP server and worker count.

``bare``: receives the whole body and answers ``{"success": true}``, nothing else.
``decode``: the same, plus one decode of the body (after gunzip) with the msgspec decoder
trackyard itself uses. Run with ``uvicorn bench.ceilings:bare`` (or ``:decode``).
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

_SUCCESS = b'{"success": true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"17")]
_decoder = msgspec.json.Decoder()


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _SUCCESS})


async def bare(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _body(receive)
        await _answer(send)


async def decode(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        body = await _body(receive)
        if (b"content-encoding", b"gzip") in scope["headers"]:
            body = zlib.decompress(body, 47)
        _decoder.decode(body)
        await _answer(send)

"""Every answer of the collection routes, in one place: statuses by code, and each vendor's shape.

Below the HTTP layer a refusal is a code and a message (``trackyard.errors``); here it
becomes a status and the body the vendor's clients expect. Answers are built on bare ASGI
(no Starlette ``Request`` or ``Response``), which on a single-event request costs more
than the event itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

import msgspec
from starlette.types import Receive, Scope, Send

from trackyard.errors import IngestError
from trackyard.ingest.pipeline import Accepted
from trackyard.wire.bloomreach import Command

#: Statuses by refusal code; every other code is the client's to fix, a 400.
_STATUS: Final = {
    "invalid_write_key": 401,
    "access_key_not_provided": 401,
    "access_key_not_found": 401,
    "invalid_secret": 403,
    "rate_limited": 429,
    "overloaded": 429,
    "store_unavailable": 503,
}

Headers = tuple[tuple[bytes, bytes], ...]


def status_of(error: IngestError) -> int:
    return _STATUS.get(error.code, 400)


class Answer(NamedTuple):
    """A response, its headers in the order Starlette's ``Response`` would send them."""

    status: int
    body: bytes
    headers: Headers


def json_answer(body: bytes, status: int = 200, headers: Headers = ()) -> Answer:
    return Answer(
        status,
        body,
        (*headers, (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")),
    )


async def send_answer(send: Send, answer: Answer, extra_headers: Headers = ()) -> None:
    status, body, headers = answer
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra_headers]})
    await send({"type": "http.response.body", "body": body})


Handler = Callable[[Scope, Receive], Awaitable[Answer]]
Refusal = Callable[[IngestError], Answer]


class AnswerEndpoint:
    """A collection endpoint on bare ASGI, answering refusals in its vendor's shape.

    ``FastCollect`` calls :meth:`answer` and sends the result with its CORS headers; to
    Starlette's router (405s, CORS preflights) this is an ordinary ASGI app.
    """

    def __init__(self, handler: Handler, refused: Refusal) -> None:
        self.handler = handler
        self.refused = refused

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        try:
            return await self.handler(scope, receive)
        except IngestError as error:
            return self.refused(error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(send, await self.answer(scope, receive))


def _retry_after(error: IngestError, reset: bytes | None) -> Headers:
    if error.retry_after is None:
        return ()
    seconds = str(error.retry_after).encode()
    return ((b"retry-after", seconds),) if reset is None else ((b"retry-after", seconds), (reset, seconds))


# -- Segment (and trackyard's own admin API, which answers the same way) -------------------------

SEGMENT_OK: Final = json_answer(b'{"success": true}')


def error_body(code: str, message: str) -> bytes:
    """Segment's error body; analytics-python needs both ``code`` and ``message``."""
    return msgspec.json.encode({"success": False, "code": code, "message": message})


def segment_refused(error: IngestError, status: int | None = None) -> Answer:
    headers = _retry_after(error, b"x-ratelimit-reset")
    return json_answer(error_body(error.code, error.message), status or status_of(error), headers)


def segment_batch(accepted: Accepted) -> Answer:
    """``{"success": true}``, listing the items rejected alone when there are any."""
    if not accepted.rejected:
        return SEGMENT_OK
    rejected = [{"index": i, "code": error.code, "message": error.message} for i, error in accepted.rejected]
    return json_answer(msgspec.json.encode({"success": True, "rejected": rejected}))


# -- Koala ---------------------------------------------------------------------------------------

#: Both success bodies on record (an unmerged docs branch and a third-party analysis) in one
#: object; every known client checks only for a 2xx.
KOALA_OK: Final = json_answer(b'{"ok":true,"status":"success"}')
KOALA_KEY_OK: Final = Answer(204, b"", ())
_KOALA_TITLES: Final = {
    400: "Invalid request",
    401: "Unauthorized",
    429: "Too many requests",
    503: "Service unavailable",
}


def koala_refused(error: IngestError) -> Answer:
    """Koala's error shape: ``error`` is a short title, ``message`` says what to fix."""
    status = status_of(error)
    title = _KOALA_TITLES.get(status, "Error")
    body = msgspec.json.encode({"error": title, "code": error.code, "message": error.message})
    return json_answer(body, status, _retry_after(error, None))


# -- Bloomreach ----------------------------------------------------------------------------------

BLOOMREACH_OK: Final = json_answer(b'{"success":true,"errors":[]}')
#: Refusals Bloomreach words as ``error`` (authorization, throttling); the rest use ``message``.
_ERROR_KEY_CODES: Final = frozenset({"invalid_project_id"})


def bloomreach_refused(error: IngestError) -> Answer:
    if error.of_event:
        # A single route's command that cannot succeed: HTTP 200 and ``success: false``, so
        # that the mobile SDKs drop it instead of retrying (vendors.md 2.5, 2.6).
        return json_answer(msgspec.json.encode({"success": False, "errors": [error.message]}))
    status = status_of(error)
    key = "message" if status == 400 and error.code not in _ERROR_KEY_CODES else "error"
    body = msgspec.json.encode({"success": False, key: error.message})
    return json_answer(body, status, _retry_after(error, None))


def bloomreach_time() -> Answer:
    return json_answer(msgspec.json.encode({"success": True, "errors": [], "time": time.time()}))


def bloomreach_batch(accepted: Accepted) -> Answer:
    """One result per command, in order; a refused command does not fail the request."""
    reasons = dict(accepted.rejected)
    results: list[dict[str, Any]] = []
    for index, item in enumerate(accepted.decoded.items):
        assert isinstance(item, Command)
        error = reasons.get(index)
        if error is not None:
            result: dict[str, Any] = {"success": False, "errors": [error.message]}
        elif item.asks_time:
            result = {"success": True, "time": time.time()}
        else:
            result = {"success": True}
        # Echoed so clients can match results to commands (the seed's example shows it).
        if isinstance(item.command, dict) and "command_id" in item.command:
            result["command_id"] = item.command["command_id"]
        results.append(result)
    body = {
        "results": results,
        "start_time": accepted.received_at_us / 1_000_000,
        "end_time": time.time(),
        "success": True,
    }
    return json_answer(msgspec.json.encode(body))


# -- Vitally -------------------------------------------------------------------------------------

VITALLY_OK: Final = json_answer(b'{"message":"Success."}')


def vitally_refused(error: IngestError) -> Answer:
    """Vitally's success body is ``{"message": ...}``; errors keep that key, plus a code."""
    body: dict[str, Any] = {"message": error.message, "code": error.code}
    if error.errors:
        body["errors"] = list(error.errors)
    return json_answer(msgspec.json.encode(body), status_of(error), _retry_after(error, b"ratelimit-reset"))

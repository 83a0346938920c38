"""The outermost layer of every request: bounded and tidy.

- At most ``max_in_flight_requests`` requests are served at once per worker. Beyond that a
  request gets ``429`` with ``Retry-After`` before its body is read, since buffered bodies
  are what fills memory under overload. Health probes are exempt.
- While the writer's queue is full, a POST is refused the same way before anything is
  read or decoded: under overload, shedding must cost as little as possible.
- A client that hangs up mid-body is let go quietly. Nothing of its request was
  acknowledged, so there is nothing to log as an error. A body that takes longer than
  ``body_timeout_seconds`` ends the same way here, once the server has answered it ``408``
  (``trackyard.http.server``, which times bodies per connection, at no cost per request).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.config import Settings
from trackyard.http.answers import error_body

_EXEMPT = frozenset({"/healthz", "/readyz"})


def _json(status: int, code: str, message: str, retry_after: int | None = None) -> tuple[Message, Message]:
    body = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        seconds = str(retry_after).encode()
        headers += [(b"retry-after", seconds), (b"x-ratelimit-reset", seconds)]
    headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}, {
        "type": "http.response.body",
        "body": body,
    }


_TOO_MANY = _json(429, "overloaded", "Too many requests in flight; retry after the Retry-After delay.", 1)


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, saturated: Callable[[], bool]) -> None:
        self.app = app
        self.saturated = saturated
        self.max_in_flight = settings.max_in_flight_requests
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight or (scope["method"] == "POST" and self.saturated()):
            for message in _TOO_MANY:
                await send(message)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass
        finally:
            self.in_flight -= 1

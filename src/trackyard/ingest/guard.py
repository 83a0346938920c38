"""The outermost layer of every request: bounded, timed and tidy.

- At most ``max_in_flight_requests`` requests are served at once per worker. Beyond that a
  request gets ``429`` with ``Retry-After`` before its body is read, since buffered bodies
  are what fills memory under overload. Health probes are exempt.
- While the writer's queue is full, a POST is refused the same way before anything is
  read or decoded: under overload, shedding must cost as little as possible.
- A body must arrive in full within ``body_timeout_seconds``: a client that trickles it
  gets ``408`` and does not hold the request open.
- A client that hangs up mid-body is let go quietly. Nothing of its request was
  acknowledged, so there is nothing to log as an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.config import Settings

_EXEMPT = frozenset({"/healthz", "/readyz"})


def _json(status: int, code: str, message: str, retry_after: int | None = None) -> tuple[Message, Message]:
    body = f'{{"success": false, "code": "{code}", "message": "{message}"}}'.encode()
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
_TOO_SLOW = _json(408, "request_timeout", "The request body took too long to arrive.")


class _BodyTimeout(Exception):
    pass


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, saturated: Callable[[], bool]) -> None:
        self.app = app
        self.saturated = saturated
        self.max_in_flight = settings.max_in_flight_requests
        self.body_timeout = float(settings.body_timeout_seconds)
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            body_done = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _BodyTimeout:
            if not started:
                for message in _TOO_SLOW:
                    await send(message)
        except ClientDisconnect:
            pass
        finally:
            self.in_flight -= 1

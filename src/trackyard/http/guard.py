"""The outermost layer of every request: bounded and tidy.

- The bodies of the requests served at once per worker are bounded in bytes
  (``max_in_flight_bytes``). A request that would pass the bound gets ``429`` with
  ``Retry-After`` before its body is read, since buffered bodies are what fills memory
  under overload. A request counts as the body it declares (``Content-Length``), at least
  one event's limit (what serving any request costs) and at most the request limit (the
  most a body is ever read to); a compressed body, or one of undeclared length, counts as
  the request limit, since what it decodes to is not known before it is read. So an SDK's
  burst of many small batches fits where a count of requests would refuse it, and
  memory stays bounded by the worst case. One request is always let in, however large,
  so a bound set below the request limit slows clients down instead of stalling them.
  Health probes are exempt, and so is ``/metrics``: it has no body, costs the formatting
  of counters (the store gauges are cached), and overload is when it must answer.
- While the writer's queue is full, a POST is refused the same way before anything is
  read or decoded: under overload, shedding must cost as little as possible.
- The 429s carry CORS headers: they hold no data, and a browser SDK that cannot read
  them sees a network failure instead of a request to slow down.
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
from trackyard.http.collection import cors_headers

_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
_IDENTITY = (b"", b"identity")


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
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        saturated: Callable[[], bool],
        shed: Callable[[str, int], None] | None = None,
    ) -> None:
        self.app = app
        self.saturated = saturated
        #: Told each refusal's reason and status (the metrics' overload counter).
        self.shed = shed
        self.max_in_flight_bytes = settings.max_in_flight_bytes
        self.least = settings.max_event_bytes
        self.most = settings.max_request_bytes
        self.in_flight_bytes = 0

    def _cost(self, scope: Scope) -> int:
        """What the request counts for against the bound (see the module docstring)."""
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding" or (
                name == b"content-encoding" and value.strip().lower() not in _IDENTITY
            ):
                return self.most
        if length is None:  # and not chunked: no body at all
            return self.least
        try:
            return min(max(int(length), self.least), self.most)
        except ValueError:  # the HTTP parser refuses these first; count the worst case anyway
            return self.most

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        cost = self._cost(scope)
        in_flight = self.in_flight_bytes
        too_much = bool(in_flight) and in_flight + cost > self.max_in_flight_bytes
        if too_much or (scope["method"] == "POST" and self.saturated()):
            if self.shed is not None:
                self.shed("in_flight_bytes" if too_much else "writer_saturated", 429)
            start, body = _TOO_MANY
            await send({**start, "headers": [*start["headers"], *cors_headers(scope)]})
            await send(body)
            return
        self.in_flight_bytes += cost
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass
        finally:
            self.in_flight_bytes -= cost

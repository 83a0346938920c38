"""Koala's server-side API: ``/web/projects/{key}/batch``, ``.../accounts/batch``, ``.../auth``.

The key in the path is the source's write key (Koala's public API key); there is no header
auth. Answers follow what Koala's clients expect (vendors.md 1.4): any 2xx is success, and
errors are ``{"error", "code", "message"}`` JSON; the choices are in docs/formats/koala.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.errors import CallError, IngestError
from trackyard.event import now_micros
from trackyard.http.body import read_body
from trackyard.ingest.collector import Collector
from trackyard.storage.base import EventRecord, RejectRecord, Source
from trackyard.wire import koala as wire

#: Both success bodies on record (an unmerged docs branch and a third-party analysis) in one
#: object; every known client checks only for a 2xx.
SUCCESS = b'{"ok":true,"status":"success"}'

_TITLES = {
    400: "Invalid request",
    401: "Unauthorized",
    429: "Too many requests",
    503: "Service unavailable",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(error: IngestError) -> Response:
    """Koala's error shape: ``error`` is a short title, ``message`` says what to fix."""
    headers = None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    title = _TITLES.get(error.status, "Error")
    body = msgspec.json.encode({"error": title, "code": error.code, "message": error.message})
    return json_response(body, error.status, headers)


class KoalaAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        return [
            Route("/web/projects/{key}/batch", self._handler("profile"), methods=["POST"]),
            Route("/web/projects/{key}/accounts/batch", self._handler("account"), methods=["POST"]),
            Route("/web/projects/{key}/auth", self.auth, methods=["GET"]),
        ]

    def _handler(self, level: wire.Level) -> Endpoint:
        route = wire.PROFILE_ROUTE if level == "profile" else wire.ACCOUNT_ROUTE

        async def endpoint(request: Request) -> Response:
            try:
                return await self.batch(request, level, route)
            except IngestError as error:
                return error_response(error)

        return endpoint

    async def batch(self, request: Request, level: wire.Level, route: str) -> Response:
        key = request.path_params["key"]
        # The key is in the path, so an unknown one is refused before the body is read.
        source = self.collector.sources.resolve(key)
        receipt = wire.Receipt(
            route=route,
            received_at_us=now_micros(),
            source_tag={"id": source.id, "name": source.name, "format": wire.FORMAT, "route": route},
        )
        try:
            body = await read_body(
                request.stream(),
                request.headers.get("content-encoding"),
                self.settings.max_request_bytes,
                "request",
            )
        except IngestError as error:
            # The body is not kept (too large or undecodable), but the refusal is.
            await self._reject(source, receipt, CallError(error.code, error.message), b"")
            raise
        if not body:
            # An empty POST is a key check: the first Segment Koala destination tested its
            # credentials this way (vendors.md 1.1).
            self.collector.limiter.take(source, 1)
            return json_response(SUCCESS)
        try:
            decoded = wire.decode(body, level, receipt)
        except CallError as error:
            await self._reject(source, receipt, error, body)
            raise IngestError(400, error.code, error.message) from None
        self.collector.limiter.take(source, len(decoded))
        received_at_ms = receipt.received_at_us // 1000
        encode = msgspec.json.encode
        events = [
            EventRecord(source.id, message_id, kind, received_at_ms, encode(event))
            for message_id, kind, event in decoded
        ]
        await self.collector.commit(events, ())
        return json_response(SUCCESS)

    async def _reject(self, source: Source, receipt: wire.Receipt, error: CallError, body: bytes) -> None:
        reject = RejectRecord(
            source.id, receipt.received_at_us // 1000, receipt.route, error.code, error.message, None, body
        )
        await self.collector.commit((), (reject,))

    async def auth(self, request: Request) -> Response:
        """Segment's "Koala (Cloud)" destination tests a key here and checks only for a 2xx."""
        try:
            self.collector.sources.resolve(request.path_params["key"])
        except IngestError as error:
            return error_response(error)
        return Response(status_code=204)

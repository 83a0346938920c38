"""Bloomreach Engagement's Tracking API (formerly Exponea) under ``/track/v2/projects/{projectToken}``.

The project token is the source's write key. Auth is Bloomreach's: public
``Authorization: Token <write key>`` (or ``?access_token=``), or private
``Authorization: Basic base64(<write key>:<source secret>)``. Answers use Bloomreach's
statuses and bodies (docs/formats/bloomreach.md): auth errors ``{"success": false, "error"}``,
a refused request ``{"success": false, "message"}``, a refused command ``success: false``
with ``errors`` inside an HTTP 200, since retrying it cannot help.
"""

from __future__ import annotations

import binascii
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.errors import CallError, IngestError
from trackyard.event import now_micros
from trackyard.http.body import read_body
from trackyard.ingest.collector import Collector
from trackyard.storage.base import EventRecord, RejectRecord, Source
from trackyard.wire import bloomreach as wire

PREFIX: Final = "/track/v2/projects/{projectToken}"
SINGLE_SUCCESS: Final = b'{"success":true,"errors":[]}'

#: Refusals Bloomreach words as ``error`` (authorization, throttling); the rest use ``message``.
_ERROR_KEY_CODES: Final = frozenset({"invalid_project_id"})

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def error_response(error: IngestError) -> Response:
    headers = None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    key = "message" if error.status == 400 and error.code not in _ERROR_KEY_CODES else "error"
    return json_response({"success": False, key: error.message}, error.status, headers)


def credentials(request: Request) -> tuple[str, str | None] | None:
    """``(key, secret)`` from ``Token``/``Basic`` auth or ``access_token``; secret ``None`` is public."""
    scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "token" and value:
        return value, None
    if scheme.lower() == "basic" and value:
        try:
            key, _, secret = b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
        if key:
            return key, secret
    token = request.query_params.get("access_token")
    return (token, None) if token else None


def _reject(
    source: Source,
    receipt: wire.Receipt,
    route: str,
    error: CallError | IngestError,
    index: int | None,
    body: bytes,
) -> RejectRecord:
    return RejectRecord(
        source.id, receipt.received_at_us // 1000, route, error.code, error.message, index, body
    )


def _record(
    source: Source, receipt: wire.Receipt, message_id: str, kind: str, event: dict[str, Any]
) -> EventRecord:
    return EventRecord(
        source.id, message_id, kind, receipt.received_at_us // 1000, msgspec.json.encode(event)
    )


class BloomreachAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def routes(self) -> list[Route]:
        single = [
            ("/customers", wire.CUSTOMERS),
            ("/customers/events", wire.EVENTS),
            ("/campaigns/clicks", wire.CLICKS),
        ]
        routes = [
            Route(PREFIX + path, self._handler(self._single, PREFIX + path, name), methods=["POST"])
            for path, name in single
        ]
        routes.append(
            Route(PREFIX + "/batch", self._handler(self._batch, PREFIX + "/batch", None), methods=["POST"])
        )
        routes.append(
            Route(
                PREFIX + "/system/time",
                self._handler(self._system_time, PREFIX + "/system/time", None),
                methods=["GET"],
            )
        )
        return routes

    def _handler(
        self, method: Callable[[Request, str, str | None], Awaitable[Response]], route: str, name: str | None
    ) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await method(request, route, name)
            except IngestError as error:
                return error_response(error)

        return endpoint

    async def _authenticate(self, request: Request) -> Source:
        """Bloomreach's order: credentials present (401), project known (400), key of that
        project (401), secret right (403). Rate limiting comes once the body is counted."""
        given = credentials(request)
        if given is None:
            raise IngestError(401, "access_key_not_provided", "Access key not provided")
        try:
            source = self.collector.sources.resolve(request.path_params["projectToken"])
        except IngestError:
            raise IngestError(400, "invalid_project_id", "Invalid project id") from None
        key, secret = given
        if key != source.write_key:
            raise IngestError(401, "access_key_not_found", "Access key not found")
        # The first check of a secret runs PBKDF2 (slow on purpose): keep it off the event loop.
        if secret is not None and not await run_in_threadpool(self.collector.secrets.check, source, secret):
            raise IngestError(403, "invalid_secret", "invalid secret")
        return source

    def _rate_limit(self, source: Source, events: int) -> None:
        try:
            self.collector.authorize(source.write_key, events)
        except IngestError as error:
            if error.status == 401:  # disabled since _authenticate: the key is no longer valid
                raise IngestError(401, "access_key_not_found", "Access key not found") from None
            raise

    async def _read(self, request: Request, source: Source, receipt: wire.Receipt, route: str) -> bytes:
        try:
            return await read_body(
                request.stream(), request.headers.get("content-encoding"), wire.MAX_REQUEST_BYTES, "request"
            )
        except IngestError as error:
            await self._keep_refused(error, source, receipt, route, b"")
            raise

    async def _keep_refused(
        self, error: IngestError, source: Source, receipt: wire.Receipt, route: str, body: bytes
    ) -> None:
        """A refused request of a known source goes to the rejects store before it is answered."""
        await self.collector.commit((), (_reject(source, receipt, route, error, None, body),))

    def _receipt(self, source: Source, route: str) -> wire.Receipt:
        tag = {"id": source.id, "name": source.name, "format": wire.FORMAT, "route": route}
        return wire.Receipt(received_at_us=now_micros(), source_tag=tag)

    async def _system_time(self, request: Request, route: str, name: str | None) -> Response:
        source = await self._authenticate(request)
        self._rate_limit(source, 0)
        return json_response({"success": True, "errors": [], "time": time.time()})

    async def _single(self, request: Request, route: str, name: str | None) -> Response:
        assert name is not None
        source = await self._authenticate(request)
        receipt = self._receipt(source, route)
        body = await self._read(request, source, receipt, route)
        self._rate_limit(source, 1)
        try:
            data = wire.decode_json(body)
        except IngestError as error:
            await self._keep_refused(error, source, receipt, route, body)
            raise
        try:
            if len(body) >= wire.MAX_COMMAND_BYTES:
                raise CallError("command_too_large", wire.TOO_LARGE)
            record = _record(source, receipt, *wire.decode({"name": name, "data": data}, receipt))
        except CallError as error:
            return await self._refuse_command(error, source, receipt, route, body)
        await self.collector.commit((record,), ())
        return Response(SINGLE_SUCCESS, media_type="application/json")

    async def _refuse_command(
        self, error: CallError, source: Source, receipt: wire.Receipt, route: str, body: bytes
    ) -> Response:
        """A single route's command that cannot succeed: HTTP 200 and ``success: false``, so
        that the mobile SDKs drop it instead of retrying (vendors.md 2.5, 2.6)."""
        await self.collector.commit((), (_reject(source, receipt, route, error, None, body),))
        return json_response({"success": False, "errors": [error.message]})

    async def _batch(self, request: Request, route: str, name: str | None) -> Response:
        source = await self._authenticate(request)
        receipt = self._receipt(source, route)
        body = await self._read(request, source, receipt, route)
        try:
            commands = wire.decode_batch(body)
        except IngestError as error:
            await self._keep_refused(error, source, receipt, route, body)
            raise
        self._rate_limit(source, len(commands))
        events: list[EventRecord] = []
        rejects: list[RejectRecord] = []
        results: list[dict[str, Any]] = []
        for index, raw in enumerate(commands):
            command: Any = None
            try:
                if len(raw) >= wire.MAX_COMMAND_BYTES:
                    raise CallError("command_too_large", wire.TOO_LARGE)
                command = wire.decode_json(raw)
                if not isinstance(command, dict):
                    raise CallError("invalid_command", "Command must be a JSON object.")
                if wire.command_name(command) == wire.SYSTEM_TIME:
                    result: dict[str, Any] = {"success": True, "time": time.time()}
                else:
                    events.append(_record(source, receipt, *wire.decode(command, receipt)))
                    result = {"success": True}
            except CallError as error:
                rejects.append(_reject(source, receipt, route, error, index, bytes(raw)))
                result = {"success": False, "errors": [error.message]}
            # Echoed so clients can match results to commands (the seed's example shows it).
            if isinstance(command, dict) and "command_id" in command:
                result["command_id"] = command["command_id"]
            results.append(result)
        await self.collector.commit(events, rejects)
        end = time.time()
        return json_response(
            {
                "results": results,
                "start_time": receipt.received_at_us / 1_000_000,
                "end_time": end,
                "success": True,
            }
        )

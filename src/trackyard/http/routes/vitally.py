"""Vitally's HTTPS Analytics API: ``POST /analytics/v1/{batch,user,account,...}``.

Authentication is the header only (``Authorization: Basic <token>``), so the source is known
before the body is read and every refusal of an authenticated request is kept as a reject.
A batch is all or nothing (docs/formats/vitally.md says why): one invalid message refuses
the whole batch with 400, and every message of it is kept in the rejects store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.errors import CallError, IngestError
from trackyard.event import now_micros
from trackyard.http.body import read_body
from trackyard.ingest.auth import basic_username, unauthorized
from trackyard.ingest.collector import Collector
from trackyard.storage.base import EventRecord, RejectRecord, Source
from trackyard.wire import vitally as wire
from trackyard.wire._json import decode_item, decode_json

PREFIX = "/analytics/v1"
SUCCESS = b'{"message":"Success."}'
#: The reject code of a valid message refused only because another one in its batch was invalid.
BATCH_REFUSED = "batch_refused"

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(error: IngestError, errors: Sequence[dict[str, Any]] = ()) -> Response:
    """Vitally's success body is ``{"message": ...}``; errors keep that key, plus a code."""
    headers = None
    if error.retry_after is not None:
        seconds = str(error.retry_after)
        headers = {"Retry-After": seconds, "RateLimit-Reset": seconds}
    body: dict[str, Any] = {"message": error.message, "code": error.code}
    if errors:
        body["errors"] = list(errors)
    return json_response(msgspec.json.encode(body), error.status, headers)


def write_key_candidates(authorization: str | None) -> list[str]:
    """What a ``Basic`` token may hold: the key itself (as Vitally's docs paste it), the key with
    a trailing colon, or base64 of ``key`` / ``key:`` (as HTTP clients send Basic auth)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token:
        return []
    candidates = [token]
    if token.endswith(":") and len(token) > 1:
        candidates.append(token[:-1])
    decoded = basic_username(authorization)
    if decoded is not None and decoded not in candidates:
        candidates.append(decoded)
    return candidates


class _BatchRefused(Exception):
    def __init__(self, error: IngestError, errors: list[dict[str, Any]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.errors = errors


class _Request:
    """One authenticated request: its source, route and receive time, and how to refuse it."""

    def __init__(self, collector: Collector, source: Source, write_key: str, route: str) -> None:
        self.collector = collector
        self.source = source
        self.write_key = write_key
        self.route = route
        self.receipt = wire.Receipt(
            now_micros(), {"id": source.id, "name": source.name, "format": wire.FORMAT, "route": route}
        )

    @property
    def received_at_ms(self) -> int:
        return self.receipt.received_at_us // 1000

    def reject(self, code: str, message: str, index: int | None, body: bytes) -> RejectRecord:
        return RejectRecord(self.source.id, self.received_at_ms, self.route, code, message, index, body)

    def record(self, message_id: str, kind: str, event: dict[str, Any]) -> EventRecord:
        return EventRecord(self.source.id, message_id, kind, self.received_at_ms, msgspec.json.encode(event))

    async def refuse(self, error: IngestError, body: bytes) -> IngestError:
        """Keep a refused request body as one reject; return the error to raise."""
        await self.collector.commit((), (self.reject(error.code, error.message, None, body),))
        return error


class VitallyAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        routes = [Route(f"{PREFIX}/batch", self._handler(None), methods=["POST"])]
        routes += [
            Route(f"{PREFIX}/{kind}", self._handler(kind), methods=["POST"]) for kind in wire.MESSAGE_TYPES
        ]
        return routes

    def _handler(self, kind: str | None) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                call = self._authenticate(request, f"{PREFIX}/{kind or 'batch'}")
                if kind is None:
                    await self.batch(request, call)
                else:
                    await self.single(request, call, kind)
            except _BatchRefused as refused:
                return error_response(refused.error, refused.errors)
            except IngestError as error:
                return error_response(error)
            return json_response(SUCCESS)

        return endpoint

    def _authenticate(self, request: Request, route: str) -> _Request:
        candidates = write_key_candidates(request.headers.get("authorization"))
        if not candidates:
            raise unauthorized(
                "No write key. Send 'Authorization: Basic <write key>' (the key as it is, "
                "or base64 of '<write key>:')."
            )
        for write_key in candidates[:-1]:
            try:
                source = self.collector.sources.resolve(write_key)
            except IngestError:
                continue
            return _Request(self.collector, source, write_key, route)
        # The last form (decoded, for a base64 token) says best what is wrong when none resolves.
        write_key = candidates[-1]
        return _Request(self.collector, self.collector.sources.resolve(write_key), write_key, route)

    async def _body(self, request: Request, call: _Request, limit: int, what: str) -> bytes:
        try:
            return await read_body(request.stream(), request.headers.get("content-encoding"), limit, what)
        except IngestError as error:
            # What was read is not kept: the reject records that a body was refused, and why.
            raise await call.refuse(error, b"") from None

    async def single(self, request: Request, call: _Request, kind: str) -> None:
        body = await self._body(request, call, self.settings.max_event_bytes, "message")
        try:
            item = decode_json(body)
        except IngestError as error:
            raise await call.refuse(error, body) from None
        self.collector.authorize(call.write_key, 1)
        try:
            message_id, canonical_type, event = wire.decode(item, kind, call.receipt)
        except CallError as error:
            raise await call.refuse(IngestError(400, error.code, error.message), body) from None
        await self.collector.commit((call.record(message_id, canonical_type, event),), ())

    async def batch(self, request: Request, call: _Request) -> None:
        settings = self.settings
        body = await self._body(request, call, settings.max_request_bytes, "request")
        try:
            items = wire.decode_batch(body)
        except IngestError as error:
            raise await call.refuse(error, body) from None
        if len(items) > wire.MAX_BATCH_MESSAGES:
            too_many = IngestError(
                400,
                "batch_too_large",
                f"The batch has {len(items):,} messages; the limit is {wire.MAX_BATCH_MESSAGES}."
                " Split it into smaller batches. Nothing in this batch was stored.",
            )
            reason = too_many.code, too_many.message
            await self.collector.commit(
                (), [call.reject(*reason, i, bytes(raw)) for i, raw in enumerate(items)]
            )
            raise too_many
        self.collector.authorize(call.write_key, len(items))
        events: list[EventRecord] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(items):
            try:
                if len(raw) > settings.max_event_bytes:
                    raise CallError(
                        "message_too_large",
                        f"The message is larger than {settings.max_event_bytes:,} bytes of JSON.",
                    )
                message_id, canonical_type, event = wire.decode(decode_item(raw), None, call.receipt)
            except CallError as error:
                errors.append({"index": index, "code": error.code, "message": error.message})
                continue
            events.append(call.record(message_id, canonical_type, event))
        if errors:
            raise await self._refuse_batch(call, items, errors)
        await self.collector.commit(events, ())

    async def _refuse_batch(
        self, call: _Request, items: list[msgspec.Raw], errors: list[dict[str, Any]]
    ) -> _BatchRefused:
        """Keep every message of the batch as a reject: the invalid ones with their own reason,
        the valid ones as refused with the batch, so the client's retry is the only copy stored."""
        first = errors[0]
        summary = (
            f"Message {first['index']} of the batch is invalid: {first['message']}"
            + (f" ({len(errors) - 1} more invalid, listed in 'errors')." if len(errors) > 1 else "")
            + " Nothing in this batch was stored."
        )
        by_index = {e["index"]: e for e in errors}
        rejects = []
        for index, raw in enumerate(items):
            reason = by_index.get(index)
            if reason is None:
                rejects.append(call.reject(BATCH_REFUSED, summary, index, bytes(raw)))
            else:
                rejects.append(call.reject(reason["code"], reason["message"], index, bytes(raw)))
        await self.collector.commit((), rejects)
        return _BatchRefused(IngestError(400, "invalid_batch", summary), errors)

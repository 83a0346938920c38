"""Segment's HTTP Tracking API: ``/v1/{identify,track,...}``, batches, pixel, settings, metrics."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from trackyard.errors import CallError, IngestError
from trackyard.event import EVENT_TYPES, now_micros
from trackyard.http.body import receive_body
from trackyard.ingest.auth import basic_username
from trackyard.ingest.collector import Collector
from trackyard.storage.base import EventRecord, RejectRecord, Source
from trackyard.wire import _segment_typed as typed
from trackyard.wire import segment as wire
from trackyard.wire._json import decode_item, decode_json

SUCCESS = b'{"success": true}'
# The smallest transparent GIF: what Segment's pixel API answers, always.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_SHORT_FORMS = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
# /beacon/v1/batch is RudderStack JS's sendBeacon route; beacons cannot set headers, so the
# key comes as ?writeKey=.
_BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch")


class Answer(NamedTuple):
    """A JSON response, its headers in the order Starlette's ``Response`` would send them."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]


def json_answer(body: bytes, status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    return Answer(
        status,
        body,
        (*headers, (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")),
    )


OK = json_answer(SUCCESS)

Handler = Callable[[Scope, Receive, str | None], Awaitable[Answer]]


class AnswerEndpoint:
    """A collection POST endpoint on bare ASGI: no Starlette ``Request`` or ``Response``.

    ``FastCollect`` calls :meth:`answer` and sends the result with its CORS headers; to
    Starlette's router (405s, CORS preflights) this is an ordinary ASGI app.
    """

    def __init__(self, handler: Handler, kind: str | None) -> None:
        self.handler = handler
        self.kind = kind

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        try:
            return await self.handler(scope, receive, self.kind)
        except IngestError as error:
            return error_answer(error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(send, await self.answer(scope, receive))


async def send_answer(
    send: Send, answer: Answer, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    status, body, headers = answer
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra_headers]})
    await send({"type": "http.response.body", "body": body})


def error_answer(error: IngestError) -> Answer:
    """Segment-style error body: analytics-python needs both ``code`` and ``message``."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if error.retry_after is not None:
        seconds = str(error.retry_after).encode()
        headers = ((b"retry-after", seconds), (b"x-ratelimit-reset", seconds))
    body = msgspec.json.encode({"success": False, "code": error.code, "message": error.message})
    return json_answer(body, error.status, headers)


def _request_headers(scope: Scope) -> tuple[str | None, str | None]:
    """The Authorization and Content-Encoding headers (the first of each), in one pass."""
    authorization = encoding = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-encoding" and encoding is None:
            encoding = value.decode("latin-1")
    return authorization, encoding


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(error: IngestError) -> Response:
    """Segment-style error body: analytics-python needs both ``code`` and ``message``."""
    headers = None
    if error.retry_after is not None:
        seconds = str(error.retry_after)
        headers = {"Retry-After": seconds, "X-RateLimit-Reset": seconds}
    body = msgspec.json.encode({"success": False, "code": error.code, "message": error.message})
    return json_response(body, error.status, headers)


def _receipt(scope: Scope, route: str, write_key: str, source: Source) -> wire.Receipt:
    client = scope.get("client")
    return wire.Receipt(
        route,
        now_micros(),
        client[0] if client else None,
        write_key,
        {"id": source.id, "name": source.name, "format": wire.FORMAT, "route": route},
    )


def _record(
    source: Source, receipt: wire.Receipt, message_id: str, kind: str, event: dict[str, Any]
) -> EventRecord:
    return _encoded(source, receipt, message_id, kind, wire.encode(event))


def _encoded(
    source: Source, receipt: wire.Receipt, message_id: str, kind: str, event_json: bytes
) -> EventRecord:
    return EventRecord(source.id, message_id, kind, receipt.received_at_us // 1000, event_json)


# "writeKey": "<anything but a quote>", with any spacing; works on invalid JSON too.
_WRITE_KEY_FIELD = re.compile(rb'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def _reject(
    receipt: wire.Receipt, source: Source, error: CallError, index: int | None, body: bytes
) -> RejectRecord:
    """A refused call, kept byte for byte, except its write key, which is never stored."""
    if b"writeKey" in body:
        body = _WRITE_KEY_FIELD.sub(rb'\1"[redacted]"', body)
    return RejectRecord(
        source.id, receipt.received_at_us // 1000, receipt.route, error.code, error.message, index, body
    )


class SegmentAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        routes = [
            Route(f"/v1/{name}", AnswerEndpoint(self.single, name), methods=["POST"])
            for name in sorted(EVENT_TYPES)
        ]
        routes += [
            Route(f"/v1/{short}", AnswerEndpoint(self.single, kind), methods=["POST"])
            for short, kind in _SHORT_FORMS.items()
        ]
        routes += [Route(path, AnswerEndpoint(self.batch, None), methods=["POST"]) for path in _BATCH_PATHS]
        routes += [
            Route("/v1/m", self.metrics, methods=["POST"]),
            Route("/v1/pixel/{call}", self.pixel, methods=["GET"]),
            Route("/v1/projects/{write_key}/settings", self.cdn_settings, methods=["GET"]),
        ]
        return routes

    async def single(self, scope: Scope, receive: Receive, kind: str | None) -> Answer:
        authorization, encoding = _request_headers(scope)
        body = await receive_body(receive, encoding, self.settings.max_event_bytes, "event")
        # A plain call is decoded once, typed; anything else the reference way (see wire._segment_typed).
        call = typed.decode_call(body)
        item: Any = decode_json(body) if call is None else None
        body_key = (
            call.writeKey if call is not None else item.get("writeKey") if isinstance(item, dict) else None
        )
        write_key = basic_username(authorization) or (body_key if isinstance(body_key, str) else None)
        source = self.collector.authorize(write_key, 1)
        assert write_key is not None
        receipt = _receipt(scope, scope["path"], write_key, source)
        if call is not None:
            if (fast := typed.finish(call, kind, receipt)) is not None:
                message_id, kind, event_json = fast
                await self.collector.commit((_encoded(source, receipt, message_id, kind, event_json),), ())
                return OK
            item = decode_json(body)  # the call was changed in place: start again from the bytes
        try:
            message_id, kind, event = wire.normalize(item, kind, receipt)
        except CallError as error:
            await self.collector.commit((), (_reject(receipt, source, error, None, body),))
            raise IngestError(400, error.code, error.message) from None
        await self.collector.commit((_record(source, receipt, message_id, kind, event),), ())
        return OK

    async def batch(self, scope: Scope, receive: Receive, kind: str | None) -> Answer:
        settings = self.settings
        authorization, encoding = _request_headers(scope)
        body = await receive_body(receive, encoding, settings.max_request_bytes, "request")
        envelope = wire.decode_envelope(body)
        write_key = (
            basic_username(authorization)
            or envelope.writeKey
            or QueryParams(scope["query_string"]).get("writeKey")
        )
        if len(envelope.batch) > settings.max_batch_events:
            raise IngestError(
                400,
                "batch_too_large",
                f"The batch has {len(envelope.batch):,} events; the limit is {settings.max_batch_events:,}."
                " Split it into smaller batches.",
            )
        source = self.collector.authorize(write_key, len(envelope.batch))
        assert write_key is not None
        receipt = _receipt(scope, scope["path"], write_key, source)
        receipt.sent_at = envelope.sentAt
        receipt.context = envelope.context
        receipt.integrations = envelope.integrations
        events: list[EventRecord] = []
        rejects: list[RejectRecord] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(envelope.batch):
            try:
                if len(raw) > settings.max_event_bytes:
                    raise CallError(
                        "event_too_large",
                        f"The event is larger than {settings.max_event_bytes:,} bytes of JSON.",
                    )
                if (fast := typed.normalize_raw(raw, None, receipt)) is not None:
                    events.append(_encoded(source, receipt, *fast))
                    continue
                message_id, call, event = wire.normalize(decode_item(raw), None, receipt)
            except CallError as error:
                rejects.append(_reject(receipt, source, error, index, bytes(raw)))
                rejected.append({"index": index, "code": error.code, "message": error.message})
                continue
            events.append(_record(source, receipt, message_id, call, event))
        await self.collector.commit(events, rejects)
        if not rejected:
            return OK
        return json_answer(msgspec.json.encode({"success": True, "rejected": rejected}))

    async def metrics(self, request: Request) -> Response:
        # analytics.js telemetry: read and drop, so the browser never retries it.
        async for _ in request.stream():
            pass
        return json_response(SUCCESS)

    async def pixel(self, request: Request) -> Response:
        """``GET /v1/pixel/{call}?data=<base64 JSON>``: always a GIF, as Segment answers."""
        kind = request.path_params["call"]
        try:
            item = _pixel_event(request)
            write_key = item.get("writeKey")
            source = self.collector.authorize(write_key if isinstance(write_key, str) else None, 1)
            receipt = _receipt(request.scope, "/v1/pixel", str(write_key), source)
            try:
                message_id, kind, event = wire.normalize(item, kind, receipt)
            except CallError as error:
                await self.collector.commit((), (_reject(receipt, source, error, None, wire.encode(item)),))
            else:
                await self.collector.commit((_record(source, receipt, message_id, kind, event),), ())
        except IngestError:
            pass
        return Response(PIXEL_GIF, media_type="image/gif", headers={"Cache-Control": "no-store"})

    async def cdn_settings(self, request: Request) -> Response:
        """The settings analytics.js loads from its CDN, pointing it at this server."""
        write_key = request.path_params["write_key"]
        try:
            self.collector.sources.resolve(write_key)
        except IngestError as error:
            return error_response(IngestError(404, error.code, error.message))
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        settings = {
            "integrations": {
                "Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": request.url.scheme}
            },
            "metrics": {"sampleRate": 0},
            "plan": {"track": {"__default": {"enabled": True}}, "identify": {"__default": {"enabled": True}}},
            "enabledMiddleware": {},
            "middlewareSettings": {},
            "remotePlugins": [],
        }
        return json_response(msgspec.json.encode(settings))


def _pixel_event(request: Request) -> dict[str, Any]:
    data = request.query_params.get("data")
    if data is None:
        # The flattened form: ?userId=u&properties.subject=hi&writeKey=k
        item: dict[str, Any] = {}
        for key, value in request.query_params.items():
            target = item
            *parents, leaf = key.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
                if not isinstance(target, dict):
                    raise IngestError(400, "invalid_pixel", f"{key} conflicts with another parameter.")
            target[leaf] = value
        return item
    try:
        decoded = base64.b64decode(
            data + "=" * (-len(data) % 4), altchars=b"-_" if "-" in data or "_" in data else None
        )
    except (binascii.Error, ValueError):
        raise IngestError(400, "invalid_pixel", "data is not base64.") from None
    item = decode_json(decoded)
    if not isinstance(item, dict):
        raise IngestError(400, "invalid_pixel", "data must encode a JSON object.")
    return item

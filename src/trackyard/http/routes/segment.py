"""Segment's HTTP Tracking API: ``/v1/{identify,track,...}``, batches, pixel, settings, metrics."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from trackyard.errors import IngestError
from trackyard.event import EVENT_TYPES
from trackyard.http.answers import SEGMENT_OK, Answer, AnswerEndpoint, segment_batch, segment_refused
from trackyard.http.body import incoming
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import Incoming, accept
from trackyard.wire import segment as wire
from trackyard.wire._json import decode_json
from trackyard.wire.base import Format
from trackyard.wire.segment_requests import SegmentBatch, SegmentCall

# The smallest transparent GIF: what Segment's pixel API answers, always.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_SHORT_FORMS = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
# /beacon/v1/batch is RudderStack JS's sendBeacon route; beacons cannot set headers, so the
# key comes as ?writeKey=.
_BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch")


class SegmentAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        calls = [(f"/v1/{name}", name) for name in sorted(EVENT_TYPES)]
        calls += [(f"/v1/{short}", kind) for short, kind in _SHORT_FORMS.items()]
        routes = [
            Route(path, self._endpoint(self._single, SegmentCall(kind)), methods=["POST"])
            for path, kind in calls
        ]
        batch = SegmentBatch(self.settings.max_event_bytes, self.settings.max_batch_events)
        routes += [Route(path, self._endpoint(self._batch, batch), methods=["POST"]) for path in _BATCH_PATHS]
        routes += [
            Route("/v1/m", self.metrics, methods=["POST"]),
            Route("/v1/pixel/{call}", self.pixel, methods=["GET"]),
            Route("/v1/projects/{write_key}/settings", self.cdn_settings, methods=["GET"]),
        ]
        return routes

    def _endpoint(
        self, handler: Callable[[Scope, Receive, Format[Any]], Awaitable[Answer]], fmt: Format[Any]
    ) -> AnswerEndpoint:
        async def answer(scope: Scope, receive: Receive) -> Answer:
            return await handler(scope, receive, fmt)

        return AnswerEndpoint(answer, segment_refused)

    async def _single(self, scope: Scope, receive: Receive, fmt: Format[Any]) -> Answer:
        request = await incoming(scope, receive, scope["path"], self.settings.max_event_bytes, "event")
        await accept(self.collector, fmt, request)
        return SEGMENT_OK

    async def _batch(self, scope: Scope, receive: Receive, fmt: Format[Any]) -> Answer:
        limit = self.settings.max_request_bytes
        request = await incoming(scope, receive, scope["path"], limit, "request", query_key="writeKey")
        return segment_batch(await accept(self.collector, fmt, request))

    async def metrics(self, request: Request) -> Response:
        # analytics.js telemetry: read and drop, so the browser never retries it.
        async for _ in request.stream():
            pass
        return Response(SEGMENT_OK.body, media_type="application/json")

    async def pixel(self, request: Request) -> Response:
        """``GET /v1/pixel/{call}?data=<base64 JSON>``: always a GIF, as Segment answers."""
        client = request.client
        try:
            body = wire.encode(_pixel_event(request))
            arrived = Incoming("/v1/pixel", body, client_ip=client.host if client else None)
            await accept(self.collector, SegmentCall(request.path_params["call"]), arrived)
        except IngestError:
            pass
        return Response(PIXEL_GIF, media_type="image/gif", headers={"Cache-Control": "no-store"})

    async def cdn_settings(self, request: Request) -> Response:
        """The settings analytics.js loads from its CDN, pointing it at this server."""
        write_key = request.path_params["write_key"]
        try:
            self.collector.sources.resolve(write_key)
        except IngestError as error:
            status, body, _ = segment_refused(error, 404)
            return Response(body, status_code=status, media_type="application/json")
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
        return Response(msgspec.json.encode(settings), media_type="application/json")


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
                    raise IngestError("invalid_pixel", f"{key} conflicts with another parameter.")
            target[leaf] = value
        return item
    try:
        decoded = base64.b64decode(
            data + "=" * (-len(data) % 4), altchars=b"-_" if "-" in data or "_" in data else None
        )
    except (binascii.Error, ValueError):
        raise IngestError("invalid_pixel", "data is not base64.") from None
    item = decode_json(decoded)
    if not isinstance(item, dict):
        raise IngestError("invalid_pixel", "data must encode a JSON object.")
    return item

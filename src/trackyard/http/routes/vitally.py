"""Vitally's HTTPS Analytics API: ``POST /analytics/v1/{batch,user,account,...}``.

Authentication is the header only (``Authorization: Basic <token>``), so the source is known
before the body is decoded and every refusal of an authenticated request is kept as a
reject. A batch is all or nothing (docs/formats/vitally.md says why): one invalid message
refuses the whole batch with 400, and every message of it is kept in the rejects store.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route
from starlette.types import Receive, Scope

from trackyard.http.answers import VITALLY_OK, Answer, AnswerEndpoint, vitally_refused
from trackyard.http.body import incoming
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import accept
from trackyard.wire import vitally as wire
from trackyard.wire.base import Format

PREFIX = "/analytics/v1"


class VitallyAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        settings = self.settings
        batch = wire.VitallyBatch(settings.max_event_bytes)
        batch_endpoint = self._endpoint("batch", batch, settings.max_request_bytes, "request")
        routes = [Route(f"{PREFIX}/batch", batch_endpoint, methods=["POST"])]
        routes += [
            Route(
                f"{PREFIX}/{kind}",
                self._endpoint(kind, wire.VitallyMessage(kind), settings.max_event_bytes, "message"),
                methods=["POST"],
            )
            for kind in wire.MESSAGE_TYPES
        ]
        return routes

    def _endpoint(self, path: str, fmt: Format[Any], limit: int, what: str) -> AnswerEndpoint:
        route = f"{PREFIX}/{path}"

        async def answer(scope: Scope, receive: Receive) -> Answer:
            await accept(self.collector, fmt, await incoming(scope, receive, route, limit, what))
            return VITALLY_OK

        return AnswerEndpoint(answer, vitally_refused)

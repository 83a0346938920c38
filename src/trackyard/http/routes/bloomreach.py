"""Bloomreach Engagement's Tracking API (formerly Exponea) under ``/track/v2/projects/{projectToken}``.

The project token is the source's write key. Auth is Bloomreach's: public
``Authorization: Token <write key>`` (or ``?access_token=``), or private
``Authorization: Basic base64(<write key>:<source secret>)``. Answers use Bloomreach's
statuses and bodies (docs/formats/bloomreach.md, ``trackyard.http.answers``): auth errors
``{"success": false, "error"}``, a refused request ``{"success": false, "message"}``, a
refused command ``success: false`` with ``errors`` inside an HTTP 200, since retrying it
cannot help.
"""

from __future__ import annotations

from typing import Final

from starlette.routing import Route
from starlette.types import Receive, Scope

from trackyard.http.answers import (
    BLOOMREACH_OK,
    Answer,
    AnswerEndpoint,
    bloomreach_batch,
    bloomreach_refused,
    bloomreach_time,
)
from trackyard.http.body import incoming
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import Incoming, accept, authorize
from trackyard.wire import bloomreach as wire

PREFIX: Final = "/track/v2/projects/{projectToken}"


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
            Route(PREFIX + path, self._single(PREFIX + path, name), methods=["POST"]) for path, name in single
        ]
        routes.append(Route(PREFIX + "/batch", self._batch(PREFIX + "/batch"), methods=["POST"]))
        routes.append(
            Route(
                PREFIX + "/system/time",
                AnswerEndpoint(self._system_time, bloomreach_refused),
                methods=["GET"],
            )
        )
        return routes

    async def _incoming(self, scope: Scope, receive: Receive, route: str) -> Incoming:
        token = scope["path_params"]["projectToken"]
        return await incoming(
            scope, receive, route, wire.MAX_REQUEST_BYTES, "request", path_key=token, query_key="access_token"
        )

    def _single(self, route: str, command: str) -> AnswerEndpoint:
        fmt = wire.BloomreachCommand(command)

        async def single(scope: Scope, receive: Receive) -> Answer:
            await accept(self.collector, fmt, await self._incoming(scope, receive, route))
            return BLOOMREACH_OK

        return AnswerEndpoint(single, bloomreach_refused)

    def _batch(self, route: str) -> AnswerEndpoint:
        fmt = wire.BloomreachBatch()

        async def batch(scope: Scope, receive: Receive) -> Answer:
            return bloomreach_batch(
                await accept(self.collector, fmt, await self._incoming(scope, receive, route))
            )

        return AnswerEndpoint(batch, bloomreach_refused)

    async def _system_time(self, scope: Scope, receive: Receive) -> Answer:
        request = await self._incoming(scope, receive, PREFIX + "/system/time")
        credentials = wire.credentials(request.authorization, request.path_key, request.query_key)
        await authorize(self.collector, credentials, 0)
        return bloomreach_time()

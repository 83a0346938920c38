"""RudderStack's control plane, as far as its browser SDK needs one: ``GET /sourceConfig/``.

``@rudderstack/analytics-js`` 3.x fetches its source's config before it sends anything:
``GET {configUrl}/sourceConfig/?p=...&v=...&writeKey=KEY`` with ``Authorization: Basic
base64(KEY:)``. Without a valid answer it never sends, so a self-hosted data plane has to
serve one. The SDK checks only that ``source`` is an object with an ``id``, a ``config``
object and a ``destinations`` array, and stops if ``source.enabled`` is ``false``.

The answer has no destinations (trackyard loads no device-mode integrations) and turns
the SDK's error and metrics reporting off, so the browser talks to nothing but trackyard.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.errors import IngestError
from trackyard.http.answers import segment_refused
from trackyard.ingest.auth import unauthorized
from trackyard.ingest.collector import Collector
from trackyard.wire.base import basic_username

#: Off: with them on, the SDK posts its own errors and metrics to RudderStack's services.
_STATS_OFF = {"errors": {"enabled": False}, "metrics": {"enabled": False}}


class RudderStackAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def routes(self) -> list[Route]:
        # The SDK asks for "/sourceConfig/", or "/sourceConfig" if its configUrl ends so.
        paths = ("/sourceConfig/", "/sourceConfig")
        return [Route(path, self.source_config, methods=["GET"]) for path in paths]

    async def source_config(self, request: Request) -> Response:
        """The source config for the write key (Basic auth, else ``?writeKey=``)."""
        header = request.headers.get("authorization")
        write_key = basic_username(header) or request.query_params.get("writeKey")
        if not write_key:
            return _refused(
                unauthorized(
                    "No write key. Send it as 'Authorization: Basic base64(<writeKey>:)' "
                    "or as ?writeKey=, as RudderStack's SDKs do."
                )
            )
        try:
            source = self.collector.sources.resolve(write_key)
        except IngestError as error:
            # As for Segment's settings: no config exists for a key that names no enabled source.
            return _refused(error, 404)
        config = {
            "isHosted": False,
            "source": {
                "id": str(source.id),
                "name": source.name,
                "writeKey": write_key,
                "workspaceId": "trackyard",
                "enabled": True,
                "config": {"statsCollection": _STATS_OFF},
                "destinations": [],
            },
        }
        return Response(msgspec.json.encode(config), media_type="application/json")


def _refused(error: IngestError, status: int | None = None) -> Response:
    status_code, body, _ = segment_refused(error, status)
    return Response(body, status_code=status_code, media_type="application/json")

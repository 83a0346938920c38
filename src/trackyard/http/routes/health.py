"""Liveness and readiness probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trackyard.errors import StoreUnavailable
from trackyard.ingest.collector import Collector


def routes(collector: Collector) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await collector.log.ping()
        except StoreUnavailable as exc:
            return JSONResponse({"status": "unavailable", "message": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]

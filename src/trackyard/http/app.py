"""The ASGI application, assembled in one place.

Collection routes (everything an SDK calls) sit behind CORS, open to any origin since
write keys are public in browsers; health probes do not need it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp

from trackyard.config import Settings
from trackyard.console import console
from trackyard.http.answers import error_body
from trackyard.http.collection import CollectionCORS, FastCollect, collection_router
from trackyard.http.guard import RequestGuard
from trackyard.http.metrics import metrics_route, observed
from trackyard.http.routes import health
from trackyard.http.routes.admin import AdminAPI
from trackyard.http.routes.destinations import DestinationsAPI
from trackyard.http.routes.profiles import ProfilesAPI
from trackyard.http.traffic import TrafficSummary
from trackyard.ingest.collector import Collector
from trackyard.metrics.exposition import Exposition
from trackyard.storage.factory import open_backends


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    body = error_body(
        code, f"{request.method} {request.url.path}: {exc.detail}. See docs/api.md for the routes."
    )
    return Response(body, status_code=exc.status_code, media_type="application/json", headers=exc.headers)


def create_app(settings: Settings) -> ASGIApp:
    backends = open_backends(settings, writer=True)
    exposition = Exposition(settings) if settings.metrics else None
    metrics = None if exposition is None else exposition.metrics
    collector = Collector(backends.log, backends.sources, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Consumers (profiles) run under the supervisor (trackyard.consumers), not in workers.
        try:
            yield
        finally:
            backends.close()

    collection = collection_router(collector)
    app = Starlette(
        routes=[
            *health.routes(collector),
            # The admin API is outside the CORS mount: browsers on other origins cannot read it.
            *AdminAPI(collector).routes(),
            *DestinationsAPI(backends).routes(),
            *ProfilesAPI(collector, backends.profiles).routes(),
            *([] if exposition is None else [metrics_route(exposition, settings.metrics_token)]),
            Mount("/console", app=console(collector, backends)),
            Mount("", app=CollectionCORS(collection)),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    shed = None if metrics is None else metrics.shed
    served = observed(
        RequestGuard(FastCollect(app, collection), settings, backends.log.saturated, shed),
        settings,
        metrics,
        [*app.routes, *collection.routes],
        collection.formats,
    )
    if not settings.traffic_summary_seconds:
        return served
    return TrafficSummary(served, lambda: backends.log.stats()["written"], settings.traffic_summary_seconds)


def create_app_from_env() -> ASGIApp:
    """The factory uvicorn's worker processes call; settings arrive as ``TRACKYARD_*`` variables."""
    return create_app(Settings.from_env())

"""The ASGI application, assembled in one place.

Collection routes (everything an SDK calls) sit behind CORS, open to any origin since
write keys are public in browsers; health probes do not need it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.config import Settings
from trackyard.ingest.collector import Collector
from trackyard.profiles import start_consumer
from trackyard.routes import health
from trackyard.routes.admin import AdminAPI
from trackyard.routes.bloomreach import BloomreachAPI
from trackyard.routes.koala import KoalaAPI
from trackyard.routes.profiles import ProfilesAPI
from trackyard.routes.segment import SegmentAPI
from trackyard.routes.vitally import VitallyAPI
from trackyard.store.sqlite import SQLiteStore

#: Preflights are cached a day, so browsers send one OPTIONS per origin, not per event.
CORS_MAX_AGE = 86_400


class _CollectionCORS:
    """CORS for the collection routes only, open to every origin.

    Paths that are not collection routes (the admin API, unknown paths) pass through with
    no CORS headers at all, so a browser on another origin cannot read them. Starlette's
    middleware speaks only to requests with an ``Origin``; the others get
    ``Access-Control-Allow-Origin: *`` here, so every collection answer carries it.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        # allow_origin_regex (not "*") makes Starlette echo the Origin, which credentials mode needs.
        self.cors = CORSMiddleware(
            router,
            allow_origin_regex=".*",
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=True,
            max_age=CORS_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or all(r.matches(scope)[0] == Match.NONE for r in self.router.routes):
            await self.router(scope, receive, send)
            return
        if any(name == b"origin" for name, _ in scope["headers"]):
            await self.cors(scope, receive, send)
            return

        async def send_with_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"access-control-allow-origin", b"*")]
            await send(message)

        await self.router(scope, receive, send_with_origin)


def collection_app(collector: Collector) -> ASGIApp:
    routes = [
        *SegmentAPI(collector).routes(),
        *KoalaAPI(collector).routes(),
        *BloomreachAPI(collector).routes(),
        *VitallyAPI(collector).routes(),
    ]
    return _CollectionCORS(Router(routes=routes))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = msgspec.json.encode(
        {
            "success": False,
            "code": "not_found" if exc.status_code == 404 else "method_not_allowed",
            "message": f"{request.method} {request.url.path}: {exc.detail}. See docs/api.md for the routes.",
        }
    )
    return Response(body, status_code=exc.status_code, media_type="application/json", headers=exc.headers)


def create_app(settings: Settings) -> Starlette:
    store = SQLiteStore(settings)
    collector = Collector(store, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop_profiles = start_consumer(settings)
        try:
            yield
        finally:
            if stop_profiles is not None:
                stop_profiles()
            store.close()

    return Starlette(
        routes=[
            *health.routes(collector),
            # The admin API is outside the CORS mount: browsers on other origins cannot read it.
            *AdminAPI(collector).routes(),
            *ProfilesAPI(collector).routes(),
            Mount("", app=collection_app(collector)),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """The factory uvicorn's worker processes call; settings arrive as ``TRACKYARD_*`` variables."""
    return create_app(Settings.from_env())

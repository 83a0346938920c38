"""The collection routes (everything an SDK calls), their CORS, and the fast path to them.

CORS is open to every origin, since write keys are public in browsers, but only on
collection routes: the admin API and unknown paths get no CORS headers, so a browser on
another origin cannot read them. Every answer on a collection path carries them, errors
included (401, 404, 405, 429...): a browser that cannot read an answer reports a CORS
failure instead of the error, and SDKs retry it as if the network had failed. The 404
for an unknown path under a collection prefix (``/v1/``, ``/web/``...) is readable too,
so a mistyped route says so; its preflight is not answered, since the admin API's paths
share the ``/v1/`` prefix.

The fast path: a POST to a collection route with a fixed path (``/v1/track``,
``/v1/batch``, ``/analytics/v1/batch``, ...) goes straight to its endpoint. That skips
Starlette's middleware layers and the route-by-route regex matching, which on a
single-event request cost more than the event itself. Endpoints written on bare ASGI
(``AnswerEndpoint``, ``trackyard.http.answers``) also skip Starlette's ``Request`` and ``Response``.
Everything else goes the normal way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.http.answers import Answer, AnswerEndpoint, json_answer, send_answer
from trackyard.http.routes.bloomreach import BloomreachAPI
from trackyard.http.routes.koala import KoalaAPI
from trackyard.http.routes.rudderstack import RudderStackAPI
from trackyard.http.routes.segment import SegmentAPI
from trackyard.http.routes.vitally import VitallyAPI
from trackyard.ingest.collector import Collector

#: Preflights are cached a day, so browsers send one OPTIONS per origin, not per event.
CORS_MAX_AGE = 86_400


class CollectionRouter(Router):
    """The collection routes, knowing each one's wire format (for metrics and the access log)."""

    def __init__(self, routes: list[tuple[str, list[Route]]]) -> None:
        super().__init__(routes=[route for _, of_format in routes for route in of_format])
        #: Route template (``/v1/track``, ``/web/projects/{key}/profile``) to format name.
        self.formats = {route.path: fmt for fmt, of_format in routes for route in of_format}


def collection_router(collector: Collector) -> CollectionRouter:
    return CollectionRouter(
        [
            ("segment", SegmentAPI(collector).routes()),
            ("koala", KoalaAPI(collector).routes()),
            ("bloomreach", BloomreachAPI(collector).routes()),
            ("vitally", VitallyAPI(collector).routes()),
            # RudderStack's SDKs send Segment's format; these are only its settings routes.
            ("rudderstack", RudderStackAPI(collector).routes()),
        ]
    )


_ANY_ORIGIN = ((b"access-control-allow-origin", b"*"),)


def cors_headers(scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
    """What Starlette's CORS middleware adds to a simple response, as configured below."""
    for name, value in scope["headers"]:
        if name == b"origin":
            return (
                (b"access-control-allow-origin", value),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            )
    return _ANY_ORIGIN


class CollectionCORS:
    """CORS for the collection routes only (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        # "/v1", "/web", ...: the first segment of every collection route's path.
        self.prefixes = frozenset("/" + r.path.split("/")[1] for r in router.routes if isinstance(r, Route))
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
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        if all(r.matches(scope)[0] == Match.NONE for r in self.router.routes):
            path: str = scope["path"]
            # No preflight here: admin routes' OPTIONS fall through to this mount too.
            if scope["method"] != "OPTIONS" and "/" + path.split("/")[1] in self.prefixes:
                await send_answer(send, _http_error(scope, HTTPException(404)), cors_headers(scope))
            else:
                await self.router(scope, receive, send)
            return
        try:
            if any(name == b"origin" for name, _ in scope["headers"]):
                await self.cors(scope, receive, send)
                return

            async def send_with_origin(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *cors_headers(scope)]
                await send(message)

            await self.router(scope, receive, send_with_origin)
        except HTTPException as exc:
            # Starlette raises its 404 and 405 past every send wrapper, to the app's handler.
            await send_answer(send, _http_error(scope, exc), cors_headers(scope))


def _http_error(scope: Scope, exc: HTTPException) -> Answer:
    """The answer ``trackyard.http.app`` gives to a 404 or 405, here with CORS."""
    code = "not_found" if exc.status_code == 404 else "method_not_allowed"
    message = f"{scope['method']} {scope['path']}: {exc.detail}. See docs/api.md for the routes."
    body = msgspec.json.encode({"success": False, "code": code, "message": message})
    extra = tuple((name.lower().encode(), value.encode()) for name, value in (exc.headers or {}).items())
    return json_answer(body, exc.status_code, extra)


class FastCollect:
    """The outermost app: fixed-path collection POSTs go straight to their endpoint."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        fixed = [
            route
            for route in router.routes
            if isinstance(route, Route)
            and route.methods
            and "POST" in route.methods
            and "{" not in route.path
        ]
        self.answers = {r.path: r.endpoint for r in fixed if isinstance(r.endpoint, AnswerEndpoint)}
        self.endpoints: dict[str, Callable[[Request], Awaitable[Response]]] = {
            r.path: r.endpoint for r in fixed if not isinstance(r.endpoint, AnswerEndpoint)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        answering = self.answers.get(path)
        if answering is not None:
            await send_answer(send, await answering.answer(scope, receive), cors_headers(scope))
            return
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        response = await endpoint(Request(scope, receive))
        response.raw_headers.extend(cors_headers(scope))
        await response(scope, receive, send)

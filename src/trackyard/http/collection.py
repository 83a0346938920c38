"""The collection routes (everything an SDK calls), their CORS, and the fast path to them.

CORS is open to every origin, since write keys are public in browsers, but only on
collection routes: the admin API and unknown paths get no CORS headers, so a browser on
another origin cannot read them.

The fast path: a POST to a collection route with a fixed path (``/v1/track``,
``/v1/batch``, ``/analytics/v1/batch``, ...) goes straight to its endpoint. That skips
Starlette's middleware layers and the route-by-route regex matching, which on a
single-event request cost more than the event itself. Endpoints written on bare ASGI
(``AnswerEndpoint``, ``trackyard.http.answers``) also skip Starlette's ``Request`` and ``Response``.
Everything else goes the normal way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.http.answers import AnswerEndpoint, send_answer
from trackyard.http.routes.bloomreach import BloomreachAPI
from trackyard.http.routes.koala import KoalaAPI
from trackyard.http.routes.segment import SegmentAPI
from trackyard.http.routes.vitally import VitallyAPI
from trackyard.ingest.collector import Collector

#: Preflights are cached a day, so browsers send one OPTIONS per origin, not per event.
CORS_MAX_AGE = 86_400


def collection_router(collector: Collector) -> Router:
    routes = [
        *SegmentAPI(collector).routes(),
        *KoalaAPI(collector).routes(),
        *BloomreachAPI(collector).routes(),
        *VitallyAPI(collector).routes(),
    ]
    return Router(routes=routes)


_ANY_ORIGIN = ((b"access-control-allow-origin", b"*"),)


def _cors_headers(scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
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
                message["headers"] = [*message.get("headers", []), *_cors_headers(scope)]
            await send(message)

        await self.router(scope, receive, send_with_origin)


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
            await send_answer(send, await answering.answer(scope, receive), _cors_headers(scope))
            return
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        response = await endpoint(Request(scope, receive))
        response.raw_headers.extend(_cors_headers(scope))
        await response(scope, receive, send)

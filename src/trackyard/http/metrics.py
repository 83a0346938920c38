"""``GET /metrics``, and the layer that counts every request (docs/metrics.md).

Each request is named by its route's template and wire format, found once per path and
kept: the fixed collection paths are known in advance, a path with a key in it
(``/web/projects/{key}/profile``) is matched once, and a path no route has is ``other``,
so a scanner's random paths cannot grow the label set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.config import Settings
from trackyard.http.access_log import access_log, log_request
from trackyard.http.routes.admin import admin_error, bears
from trackyard.metrics.exposition import Exposition
from trackyard.metrics.instruments import Metrics

#: The text format's media type (prometheus_client's ``CONTENT_TYPE_LATEST``).
_TEXT_FORMAT: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Paths remembered before the memory of them is cleared (keys in paths make them many).
_KNOWN_PATHS: Final = 4096
OTHER: Final = "other"


class NamedRoute:
    """A route as labels and logs name it: its template, its format, its instruments."""

    __slots__ = ("format", "metrics", "route", "templated")

    def __init__(self, route: str, fmt: str, metrics: Metrics | None) -> None:
        self.route = route
        self.format = fmt
        #: Whether the path has parts of its own (a key, a call type) the template leaves out.
        self.templated = "{" in route
        self.metrics = None if metrics is None else metrics.route(route, fmt)


class RouteNames:
    """A request's route template and format, for labels and the access log."""

    def __init__(self, metrics: Metrics | None, routes: Iterable[BaseRoute], formats: dict[str, str]) -> None:
        self._metrics = metrics
        self._formats = formats
        plain = [route for route in routes if isinstance(route, Route)]
        self._fixed = {r.path: self._named(r.path) for r in plain if "{" not in r.path}
        self._templated = [(r.path_regex, self._named(r.path)) for r in plain if "{" in r.path]
        self._other = NamedRoute(OTHER, "", metrics)
        self._known: dict[str, NamedRoute] = {}

    def _named(self, route: str) -> NamedRoute:
        return NamedRoute(route, self._formats.get(route, ""), self._metrics)

    def of(self, path: str) -> NamedRoute:
        found = self._fixed.get(path) or self._known.get(path)
        if found is None:
            found = next((named for regex, named in self._templated if regex.match(path)), self._other)
            if len(self._known) >= _KNOWN_PATHS:
                self._known.clear()
            self._known[path] = found
        return found


class ObservedRequests:
    """The outermost layer: requests in flight, each answer's status and latency, and the
    access log's line, whichever of them is on.

    A request the client hung up on before any answer counts as status ``499`` (nginx's
    "client closed request"), one that raised before answering as ``500``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None, names: RouteNames, access_log: bool) -> None:
        self.app = app
        self._in_flight = None if metrics is None else metrics.in_flight
        self._names = names
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        named = self._names.of(scope["path"])
        logged = self._access_log and access_log.isEnabledFor(logging.INFO)
        started = perf_counter()
        status, sent = 499, 0

        async def watched(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif logged and message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        in_flight = self._in_flight
        if in_flight is not None:
            in_flight.inc()
        try:
            await self.app(scope, receive, watched)
        except BaseException:
            if status == 499:
                status = 500
            raise
        finally:
            seconds = perf_counter() - started
            if in_flight is not None and named.metrics is not None:
                in_flight.dec()
                named.metrics.answered(status, seconds)
            if logged:
                log_request(scope, named, status, sent, seconds)


def observed(
    app: ASGIApp,
    settings: Settings,
    metrics: Metrics | None,
    routes: Iterable[BaseRoute],
    formats: dict[str, str],
) -> ASGIApp:
    """``app`` counted (unless metrics are off) and access-logged (if asked)."""
    if metrics is None and not settings.access_log:
        return app
    return ObservedRequests(app, metrics, RouteNames(metrics, routes, formats), settings.access_log)


def metrics_route(exposition: Exposition, token: str | None) -> Route:
    """``GET /metrics``, open, or only with ``Authorization: Bearer <token>`` when one is set."""

    async def metrics(request: Request) -> Response:
        if token is not None and not bears(request, token):
            return admin_error(
                401, "invalid_metrics_token", "/metrics needs 'Authorization: Bearer <metrics token>'."
            )
        # Summing the workers' files reads them: off the event loop that serves events.
        body = await run_in_threadpool(exposition.render)
        return Response(body, media_type=_TEXT_FORMAT)

    return Route("/metrics", metrics, methods=["GET"])

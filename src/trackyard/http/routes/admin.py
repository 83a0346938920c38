"""The guard in front of every read and admin endpoint: a Bearer admin token.

Write keys are public (they ship in browsers), so they can never read anything; reading
needs the operator's admin token. Without a configured token the admin API is off rather
than open. The token is compared in constant time and never echoed or logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.config import Settings
from trackyard.http.answers import error_body
from trackyard.ingest.collector import Collector

Endpoint = Callable[[Request], Awaitable[Response]]


def admin_error(status: int, code: str, message: str) -> Response:
    body = error_body(code, message)
    headers = {"WWW-Authenticate": 'Bearer realm="trackyard"'} if status == 401 else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def bears(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def admin_only(settings: Settings, endpoint: Endpoint) -> Endpoint:
    """Wrap ``endpoint`` so it answers only requests bearing the admin token."""
    token = settings.admin_token

    async def guarded(request: Request) -> Response:
        if token is None:
            return admin_error(
                404,
                "admin_api_off",
                "The admin API is off. Start the server with --admin-token "
                "(or TRACKYARD_ADMIN_TOKEN) to use it.",
            )
        if not bears(request, token):
            return admin_error(
                401, "invalid_admin_token", "This endpoint needs 'Authorization: Bearer <admin token>'."
            )
        return await endpoint(request)

    return guarded


class AdminAPI:
    """Read access to the log and the sources, for operators and tools (never for write keys)."""

    def __init__(self, collector: Collector) -> None:
        self.log = collector.log
        self.registry = collector.registry
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        return [
            Route("/v1/events", admin_only(self.settings, self.events), methods=["GET"]),
            Route("/v1/sources", admin_only(self.settings, self.sources), methods=["GET"]),
        ]

    async def events(self, request: Request) -> Response:
        """``GET /v1/events?after=SEQ&limit=N&source=NAME&type=T``: the log, oldest first, from a cursor."""
        query = request.query_params
        try:
            after = int(query.get("after", 0))
            limit = min(int(query.get("limit", 100)), 1000)
        except ValueError:
            return admin_error(400, "invalid_query", "after and limit must be whole numbers.")
        source_id = None
        if name := query.get("source"):
            found = [s for s in self.registry.sources() if s.name == name]
            if not found:
                return admin_error(404, "unknown_source", f"No source named {name!r}.")
            source_id = found[0].id
        rows = await run_in_threadpool(
            self.log.read_events, after, max(limit, 1), source_id, query.get("type")
        )
        # The stored bodies are canonical JSON already: splice them instead of decoding them.
        body = b'{"events":[' + b",".join(row.body for row in rows) + b'],"next":'
        body += str(rows[-1].seq if rows else after).encode() + b"}"
        return Response(body, media_type="application/json")

    async def sources(self, request: Request) -> Response:
        sources = await run_in_threadpool(self.registry.sources)
        listed = [s.public() for s in sources]
        return Response(msgspec.json.encode({"sources": listed}), media_type="application/json")

"""Koala's server-side API: ``/web/projects/{key}/batch``, ``.../accounts/batch``, ``.../auth``.

The key in the path is the source's write key (Koala's public API key); there is no header
auth. Answers follow what Koala's clients expect (vendors.md 1.4): any 2xx is success, and
errors are ``{"error", "code", "message"}`` JSON (``trackyard.http.answers``); the choices
are in docs/formats/koala.md.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import Receive, Scope

from trackyard.http.answers import KOALA_KEY_OK, KOALA_OK, Answer, AnswerEndpoint, koala_refused
from trackyard.http.body import incoming
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import accept
from trackyard.wire import koala as wire


class KoalaAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.settings = collector.settings

    def routes(self) -> list[Route]:
        return [
            Route(wire.PROFILE_ROUTE, self._endpoint(wire.PROFILE_ROUTE, "profile"), methods=["POST"]),
            Route(wire.ACCOUNT_ROUTE, self._endpoint(wire.ACCOUNT_ROUTE, "account"), methods=["POST"]),
            Route("/web/projects/{key}/auth", AnswerEndpoint(self.auth, koala_refused), methods=["GET"]),
        ]

    def _endpoint(self, route: str, level: wire.Level) -> AnswerEndpoint:
        fmt = wire.KoalaBatch(level)

        async def batch(scope: Scope, receive: Receive) -> Answer:
            key = scope["path_params"]["key"]
            request = await incoming(
                scope, receive, route, self.settings.max_request_bytes, "request", path_key=key
            )
            await accept(self.collector, fmt, request)
            return KOALA_OK

        return AnswerEndpoint(batch, koala_refused)

    async def auth(self, scope: Scope, receive: Receive) -> Answer:
        """Segment's "Koala (Cloud)" destination tests a key here and checks only for a 2xx."""
        self.collector.sources.resolve(scope["path_params"]["key"])
        return KOALA_KEY_OK

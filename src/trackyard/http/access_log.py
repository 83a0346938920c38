"""``serve --access-log``: a line per request on the ``trackyard.access`` logger, at INFO.

Off by default: formatting and writing a line costs about as much as a small request
itself (docs/metrics.md has the figures). Each line carries its fields as attributes too,
so ``--log-format json`` prints them as JSON fields: method, path, status, bytes (of the
answer's body), ms, format, source (the source's name, once its key was known) and
client_ip. The path is the one requested without its query string (``?writeKey=``), or
the route's template when the path holds a key (``/web/projects/{key}/batch``): write keys
never reach the log.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackyard.ingest.pipeline import request_source

if TYPE_CHECKING:
    from trackyard.http.metrics import RouteNames

log = logging.getLogger("trackyard.access")


class AccessLog:
    def __init__(self, app: ASGIApp, names: RouteNames) -> None:
        self.app = app
        self._names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status, sent = 499, 0

        async def measured(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, measured)
        except BaseException:
            if status == 499:
                status = 500
            raise
        finally:
            self._line(scope, status, sent, (perf_counter() - started) * 1000)

    def _line(self, scope: Scope, status: int, sent: int, ms: float) -> None:
        client = scope.get("client")
        named = self._names.of(scope["path"])
        fields = {
            "method": scope["method"],
            "path": named.route if named.templated else scope["path"],
            "status": status,
            "bytes": sent,
            "ms": round(ms, 3),
            "format": named.format,
            "source": request_source.get(),
            "client_ip": client[0] if client else "",
        }
        log.info(
            "%s %s %d %dB %.1fms format=%s source=%s ip=%s",
            fields["method"],
            fields["path"],
            status,
            sent,
            ms,
            fields["format"] or "-",
            fields["source"] or "-",
            fields["client_ip"] or "-",
            extra={"fields": fields},
        )

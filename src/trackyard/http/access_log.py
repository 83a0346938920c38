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
from typing import TYPE_CHECKING

from starlette.types import Scope

from trackyard.ingest.pipeline import request_source

if TYPE_CHECKING:
    from trackyard.http.metrics import NamedRoute

access_log = logging.getLogger("trackyard.access")


def log_request(scope: Scope, named: NamedRoute, status: int, sent: int, seconds: float) -> None:
    """One request's line (``trackyard.http.metrics.ObservedRequests`` times and calls it)."""
    client = scope.get("client")
    ms = seconds * 1000
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
    access_log.info(
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

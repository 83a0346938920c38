"""A one-line summary of the traffic in the server log, at most every few seconds.

uvicorn's access log is off (a line per request costs more than a small request itself),
so without this nothing at the default level shows events arriving. Counting is per
request (its status), never per event: the events stored come from the writer's own
counter. The timer runs only while there is traffic: the first counted request after a
quiet spell arms it, and it fires once, ``interval`` seconds later, with what came in.

Each worker process logs its own summary.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# uvicorn's own logger: it is what `serve --log-level` configures and prints.
log = logging.getLogger("uvicorn.error")


def _count_of(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def summary_line(requests: int, events: int, refused: Counter[int]) -> str:
    """E.g. ``accepted 56 requests (1,234 new events stored), refused 3 (401: 2, 400: 1)``."""
    line = f"accepted {_count_of(requests, 'request')} ({_count_of(events, 'new event')} stored)"
    total = sum(refused.values())
    if total:
        by_count = sorted(refused.items(), key=lambda item: (-item[1], item[0]))
        line += f", refused {total:,} ({', '.join(f'{status}: {n:,}' for status, n in by_count)})"
    return line


class TrafficSummary:
    """Wraps the app: counts each POST's answer by status, logs a summary per ``interval``."""

    def __init__(self, app: ASGIApp, stored: Callable[[], int], interval: float) -> None:
        self.app = app
        self._stored = stored
        self._interval = interval
        self._accepted = 0
        self._refused: Counter[int] = Counter()
        #: The writer's count at the last summary: only counted requests write events.
        self._stored_before = 0
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only POSTs send events: probes, settings and admin reads pass straight through.
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._count(message["status"])
            await send(message)

        await self.app(scope, receive, counted)

    def _count(self, status: int) -> None:
        if status < 300:
            self._accepted += 1
        else:
            self._refused[status] += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._report)

    def _report(self) -> None:
        self._timer = None
        stored = self._stored()
        log.info(summary_line(self._accepted, stored - self._stored_before, self._refused))
        self._accepted = 0
        self._refused = Counter()
        self._stored_before = stored

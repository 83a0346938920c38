"""The console's pages: the live debugger, sources, destinations and profiles.

Each reads through the interfaces the rest of trackyard uses (the log, the source registry,
``trackyard destinations``' status rows, ``ProfileViews``), in a thread, since they block.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from trackyard import snippets
from trackyard.config import Settings
from trackyard.console.app import PREFIX, Form, Guard
from trackyard.console.live import Filters, LiveTail
from trackyard.console.session import Session
from trackyard.destinations.status import outstanding, requests_line, status
from trackyard.event import EVENT_TYPES
from trackyard.ingest.collector import Collector
from trackyard.profiles.facts import PERSON
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.views import ProfileViews, RefError
from trackyard.storage.base import DeadLetter, NoSuchSource, Source, SourceExists
from trackyard.storage.factory import Backends, destinations_exist, open_destinations
from trackyard.storage.secrets import generate_secret
from trackyard.storage.source_names import InvalidSourceName, check_source_name

FORMATS: Final = ("segment", "koala", "bloomreach", "vitally")
#: Tried in turn for a profile id typed without ``TYPE:``.
_BARE_ID_TYPES: Final = ("user_id", "anonymous_id", "email")
_PROFILE_EVENTS: Final = 25
_DEAD_SHOWN: Final = 100
_REPLAY_TIMEOUT_SECONDS: Final = 300.0


class Pages:
    def __init__(self, guard: Guard, collector: Collector, backends: Backends) -> None:
        self.guard = guard
        self.collector = collector
        self.backends = backends
        self.registry = collector.registry
        self.tail = LiveTail(collector.log, backends.rejects, collector.registry.sources)
        self.profile_rules = ProfileSettings.from_env()

    def routes(self) -> list[BaseRoute]:
        page, data, change = self.guard.page, self.guard.data, self.guard.change
        return [
            Route("/live", page(self.live), methods=["GET"]),
            Route("/live/stream", data(self.stream), methods=["GET"]),
            Route("/sources", page(self.sources), methods=["GET"]),
            Route("/sources", change(self.create_source), methods=["POST"]),
            Route("/sources/{name}", page(self.source), methods=["GET"]),
            Route("/sources/{name}/{action}", change(self.change_source), methods=["POST"]),
            Route("/destinations", page(self.destinations), methods=["GET"]),
            Route("/destinations/{name}/replay", change(self.replay), methods=["POST"]),
            Route("/profiles", page(self.profiles), methods=["GET"]),
        ]

    # -- live debugger ---------------------------------------------------------------------

    async def live(self, request: Request, session: Session) -> Response:
        sources = await run_in_threadpool(self.registry.sources)
        return self.guard.render(
            request,
            "live.html",
            session,
            sources=[s.name for s in sources],
            formats=FORMATS,
            types=sorted(EVENT_TYPES),
            filters=Filters.from_query(request.query_params),
        )

    async def stream(self, request: Request, session: Session) -> Response:
        """``GET /console/live/stream?source=&format=&type=&event=&user=``: Server-Sent Events."""
        if self.tail.full():
            return Response(
                b"Too many debuggers are open on this worker; close one and retry.",
                status_code=503,
                headers={"Retry-After": "5"},
                media_type="text/plain",
            )
        filters = Filters.from_query(request.query_params)
        # EventSource sends Last-Event-ID when it reconnects; the page sends ?resume= after a pause.
        resume = request.headers.get("last-event-id") or request.query_params.get("resume")
        return StreamingResponse(
            self.tail.stream(resume, filters),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- sources ---------------------------------------------------------------------------

    async def sources(self, request: Request, session: Session, **extra: Any) -> Response:
        sources = await run_in_threadpool(self.registry.sources)
        return self.guard.render(
            request, "sources.html", session, status=extra.pop("status", 200), sources=sources, **extra
        )

    async def create_source(self, request: Request, session: Session, form: Form) -> Response:
        name = form.get("name", "").strip()
        try:
            check_source_name(name)
            rate_limit = _rate_limit(form.get("rate_limit", ""))
        except (InvalidSourceName, ValueError) as exc:
            return await self.sources(request, session, status=400, error=str(exc), typed=name)
        secret = generate_secret()
        try:
            source = await run_in_threadpool(self.registry.add_source, name, None, rate_limit, secret)
        except SourceExists:
            message = f"A source named {name!r} exists already."
            return await self.sources(request, session, status=409, error=message, typed=name)
        return await self._source_page(request, session, source, notice="Created.", secret=secret)

    async def source(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        found = await run_in_threadpool(self.registry.source_by_name, name)
        if found is None:
            return await self.sources(request, session, status=404, error=f"No source named {name!r}.")
        return await self._source_page(request, session, found)

    async def change_source(self, request: Request, session: Session, form: Form) -> Response:
        """``POST /console/sources/NAME/{rotate,enable,disable,rate-limit}``."""
        name, action = request.path_params["name"], request.path_params["action"]
        registry = self.registry
        try:
            if action == "rotate":
                source = await run_in_threadpool(registry.rotate_source, name)
                notice = "Rotated: the old write key no longer works."
            elif action in ("enable", "disable"):
                source = await run_in_threadpool(registry.set_source_enabled, name, action == "enable")
                notice = f"{action.capitalize()}d."
            elif action == "rate-limit":
                limit = _rate_limit(form.get("rate_limit", ""))
                source = await run_in_threadpool(registry.set_source_rate_limit, name, limit)
                notice = "Rate limit set." if limit else "Rate limit removed."
            else:
                return await self.sources(request, session, status=404, error=f"No action {action!r}.")
        except NoSuchSource:
            return await self.sources(request, session, status=404, error=f"No source named {name!r}.")
        except ValueError as exc:
            found = await run_in_threadpool(registry.source_by_name, name)
            assert found is not None
            return await self._source_page(request, session, found, status=400, error=str(exc))
        return await self._source_page(request, session, source, notice=notice)

    async def _source_page(
        self, request: Request, session: Session, source: Source, status: int = 200, **extra: Any
    ) -> Response:
        url = str(request.base_url).rstrip("/")
        answer = self.guard.render(
            request,
            "source.html",
            session,
            status,
            source=source,
            snippets=snippets.every_client(url, source.write_key),
            **extra,
        )
        # After a change (a POST htmx sent), the address bar shows the source's page, which reloads.
        answer.headers["HX-Push-Url"] = f"{PREFIX}/sources/{source.name}"
        return answer

    # -- destinations ----------------------------------------------------------------------

    def _destination_rows(self) -> list[dict[str, Any]] | None:
        """Each destination's status row (``trackyard destinations show``'s) and dead letters."""
        settings = self.collector.settings
        if not destinations_exist(settings):
            return None
        registry = open_destinations(settings)
        try:
            rows = []
            for destination in registry.destinations():
                row = status(self.backends, registry, destination)
                row["requests"] = requests_line(row["requests"])
                dead = outstanding(self.backends, destination)
                row["dead_letters"] = [_dead_letter(letter) for letter in dead[-_DEAD_SHOWN:]]
                rows.append(row)
            return rows
        finally:
            registry.close()

    async def destinations(self, request: Request, session: Session, **extra: Any) -> Response:
        rows = await run_in_threadpool(self._destination_rows)
        return self.guard.render(
            request, "destinations.html", session, extra.pop("status", 200), rows=rows, **extra
        )

    async def replay(self, request: Request, session: Session, form: Form) -> Response:
        """Re-send a destination's dead letters by running ``trackyard destinations replay --dead``:
        the same code as the command, in its own process, so the server's workers never wait."""
        name = request.path_params["name"]
        settings = self.collector.settings
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trackyard",
            "destinations",
            "replay",
            name,
            "--dead",
            "--data-dir",
            str(settings.data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(settings),
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), _REPLAY_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            return await self.destinations(request, session, status=504, error="The replay took too long.")
        if process.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()[-1:] or ["replay failed"]
            return await self.destinations(request, session, status=400, error=message[0])
        return await self.destinations(request, session, notice=out.decode(errors="replace").strip())

    # -- profiles --------------------------------------------------------------------------

    def _profile(self, ref: str) -> dict[str, Any]:
        views = ProfileViews(self.collector.log, self.backends.profiles(), self.profile_rules)
        refs = [ref] if ":" in ref else [f"{t}:{ref}" for t in _BARE_ID_TYPES]
        error: RefError | None = None
        for tried in refs:
            try:
                pid = views.find(PERSON, tried)
            except RefError as exc:
                error = error or exc
                continue
            return {
                "summary": views.summary(pid),
                "traits": views.traits(pid, history=True),
                "identities": views.identities(pid),
                "events": [
                    {"seq": e["seq"], "event": e["event"], "raw": msgspec.json.encode(e["event"]).decode()}
                    for e in views.events(pid, None, _PROFILE_EVENTS)["events"]
                ],
            }
        assert error is not None
        raise error

    async def profiles(self, request: Request, session: Session) -> Response:
        ref = request.query_params.get("ref", "").strip()
        if not ref:
            return self.guard.render(request, "profiles.html", session, ref="", profile=None)
        try:
            profile = await run_in_threadpool(self._profile, ref)
        except RefError as exc:
            return self.guard.render(
                request, "profiles.html", session, exc.status, ref=ref, profile=None, error=exc.message
            )
        return self.guard.render(request, "profiles.html", session, ref=ref, profile=profile)


def _rate_limit(text: str) -> float | None:
    """A form's rate limit: empty for none, else events per second above 0."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"The rate limit must be a number of events per second (got {text!r}).") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("The rate limit must be above 0 events per second; leave it empty for none.")
    return value


def _dead_letter(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "seq": letter.seq,
        "type": letter.type,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "failed_at_ms": letter.failed_at_ms,
    }


def _child_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env()}

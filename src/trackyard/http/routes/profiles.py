"""Profiles and accounts over HTTP (issue 4), behind the admin token; app.py already mounts them.

Paths name a profile by one of its ids, ``TYPE:VALUE`` in one path segment
(``/v1/profiles/email:ann%40example.com``). The segment is split from the raw path before
percent-decoding, so a value may contain anything, ``/`` (as ``%2F``) included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.http.routes.admin import admin_error, admin_only
from trackyard.ingest.collector import Collector
from trackyard.profiles.consumer import status
from trackyard.profiles.facts import ACCOUNT, PERSON
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import ProfileStore
from trackyard.profiles.views import ProfileViews, RefError

MAX_PAGE = 1000


def _json(body: Any) -> Response:
    return Response(msgspec.json.encode(body), media_type="application/json")


class ProfilesAPI:
    def __init__(self, collector: Collector, profiles: Callable[[], ProfileStore]) -> None:
        self.collector = collector
        self.rules = ProfileSettings.from_env()
        #: Opens the profile store on first use (``Backends.profiles``).
        self._profiles = profiles

    def routes(self) -> list[Route]:
        guard = self.collector.settings
        return [
            Route("/v1/profiles-status", admin_only(guard, self.status), methods=["GET"]),
            Route("/v1/profiles/{rest:path}", admin_only(guard, self.person), methods=["GET"]),
            Route("/v1/accounts/{rest:path}", admin_only(guard, self.account), methods=["GET"]),
        ]

    def _views(self) -> ProfileViews:
        # Opened on first use: the profile store is created by whichever process gets there first.
        return ProfileViews(self.collector.log, self._profiles(), self.rules)

    async def status(self, request: Request) -> Response:
        """``GET /v1/profiles-status``: the consumer's cursor, the log head, the lag, counts."""
        views = self._views()
        log = views.log
        settings = self.collector.settings
        body = await run_in_threadpool(status, log, views.profiles, settings, self.rules)
        return _json(body)

    async def person(self, request: Request) -> Response:
        """``GET /v1/profiles/{ref}[/traits|/events|/identities|/accounts|/merges]``."""
        return await self._answer(
            request, PERSON, "/v1/profiles/", ("traits", "events", "identities", "accounts", "merges")
        )

    async def account(self, request: Request) -> Response:
        """``GET /v1/accounts/{ref}[/members|/traits|/events|/identities|/merges]``."""
        return await self._answer(
            request, ACCOUNT, "/v1/accounts/", ("members", "traits", "events", "identities", "merges")
        )

    async def _answer(self, request: Request, kind: str, prefix: str, parts: tuple[str, ...]) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        segments = raw.decode("latin-1").split("?", 1)[0][len(prefix) :].split("/")
        if len(segments) > 2 or (len(segments) == 2 and segments[1] not in parts) or not segments[0]:
            return admin_error(
                404, "not_found", f"GET {request.url.path}: no such route. Sub-resources: {', '.join(parts)}."
            )
        ref = unquote(segments[0])
        part = segments[1] if len(segments) == 2 else ""
        query = request.query_params
        try:
            before = int(query["before"]) if "before" in query else None
            limit = min(max(int(query.get("limit", 100)), 1), MAX_PAGE)
        except ValueError:
            return admin_error(400, "invalid_query", "before and limit must be whole numbers.")
        history = query.get("history", "").lower() in ("1", "true", "yes")
        views = self._views()
        handlers: dict[str, Callable[[int], Any]] = {
            "": views.summary,
            "traits": lambda pid: views.traits(pid, history),
            "events": lambda pid: views.events(pid, before, limit),
            "identities": lambda pid: {"identities": views.identities(pid)},
            "accounts": lambda pid: {"accounts": views.accounts(pid)},
            "members": lambda pid: {"members": views.members(pid)},
            "merges": lambda pid: {"merges": views.merges(pid)},
        }

        def answer() -> Any:
            pid = views.find(kind, ref)
            return {"id": pid, **handlers[part](pid)} if part else handlers[part](pid)

        try:
            return _json(await run_in_threadpool(answer))
        except RefError as exc:
            return admin_error(exc.status, exc.code, exc.message)

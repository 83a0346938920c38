"""The destinations admin API, behind the admin token (docs/api.md#destinations).

The same operations as ``trackyard destinations``, on the same registry: a destination
added, changed or removed here is picked up by the supervisor within a second. Keys,
secrets and header values are accepted, stored, and never returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trackyard.destinations.status import iso, outstanding, status
from trackyard.destinations.validation import InvalidDestination, check
from trackyard.http.routes.admin import admin_error, admin_only
from trackyard.storage.destinations import (
    Destination,
    DestinationExists,
    DestinationRegistry,
    NoSuchDestination,
)
from trackyard.storage.factory import Backends, destinations_exist, open_destinations

#: Fields a PATCH may change (``name`` and ``format`` name what it is: remove and add instead).
_CHANGEABLE = frozenset(
    {"url", "key", "secret", "headers", "sources", "types", "events", "batch_size", "ordered", "enabled"}
)


class _Fields(msgspec.Struct, forbid_unknown_fields=True):
    """A destination as the API takes it (POST: all that is needed; PATCH: what changes)."""

    name: str | None = None
    format: str | None = None
    url: str | None = None
    key: str | None = None
    secret: str | None = None
    headers: dict[str, str] | None = None
    sources: list[str] | None = None
    types: list[str] | None = None
    events: list[str] | None = None
    batch_size: int | None = None
    ordered: bool | None = None
    enabled: bool | None = None


class _Replay(msgspec.Struct, forbid_unknown_fields=True):
    dead: bool = False
    since: str | None = None
    after: int | None = None


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status_code, media_type="application/json")


def _decode(request_body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(request_body or b"{}", type=kind)
    except msgspec.ValidationError as error:
        raise _Refused(admin_error(400, "invalid_body", str(error))) from None
    except msgspec.DecodeError:
        raise _Refused(admin_error(400, "invalid_json", "The body is not JSON.")) from None


def _changes(fields: _Fields) -> dict[str, Any]:
    given = {f: getattr(fields, f) for f in _CHANGEABLE if getattr(fields, f) is not None}
    for many in ("sources", "types", "events"):
        if many in given:
            given[many] = tuple(given[many])
    if "headers" in given:
        given["headers"] = tuple(given["headers"].items())
    return given


class DestinationsAPI:
    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        self._settings = backends.settings

    def routes(self) -> list[Route]:
        def route(path: str, endpoint: Any, method: str) -> Route:
            return Route(path, admin_only(self._settings, endpoint), methods=[method])

        return [
            route("/v1/destinations", self.list, "GET"),
            route("/v1/destinations", self.add, "POST"),
            route("/v1/destinations/{name}", self.show, "GET"),
            route("/v1/destinations/{name}", self.update, "PATCH"),
            route("/v1/destinations/{name}", self.remove, "DELETE"),
            route("/v1/destinations/{name}/enable", self.enable, "POST"),
            route("/v1/destinations/{name}/disable", self.disable, "POST"),
            route("/v1/destinations/{name}/dead", self.dead, "GET"),
            route("/v1/destinations/{name}/replay", self.replay, "POST"),
        ]

    async def _run(self, work: Any, *args: Any) -> Response:
        """``work(registry, *args)`` in a thread, its refusals answered as errors."""

        def call() -> Response:
            registry = open_destinations(self._settings)
            try:
                return work(registry, *args)  # type: ignore[no-any-return]
            except _Refused as refused:
                return refused.response
            finally:
                registry.close()

        return await run_in_threadpool(call)

    def _get(self, registry: DestinationRegistry, name: str) -> Destination:
        try:
            return registry.get(name)
        except NoSuchDestination:
            raise _Refused(
                admin_error(404, "unknown_destination", f"No destination named {name!r}.")
            ) from None

    def _checked(self, destination: Destination) -> Destination:
        try:
            check(destination)
        except InvalidDestination as error:
            raise _Refused(admin_error(400, f"invalid_{error.field}", str(error))) from None
        return destination

    async def list(self, request: Request) -> Response:
        """``GET /v1/destinations``: each with its state, as ``show``."""
        if not destinations_exist(self._settings):  # looking creates nothing
            return _json({"destinations": []})

        def listed(registry: DestinationRegistry) -> Response:
            rows = [status(self._backends, registry, d) for d in registry.destinations()]
            return _json({"destinations": rows})

        return await self._run(listed)

    async def add(self, request: Request) -> Response:
        """``POST /v1/destinations`` with ``name``, ``format``, ``url`` and the rest: 201."""
        body = await request.body()

        def added(registry: DestinationRegistry) -> Response:
            fields = _decode(body, _Fields)
            if not (fields.name and fields.format and fields.url):
                raise _Refused(admin_error(400, "invalid_body", "name, format and url are needed."))
            destination = self._checked(
                dataclasses.replace(Destination(fields.name, fields.format, fields.url), **_changes(fields))
            )
            try:
                stored = registry.add(destination)
            except DestinationExists:
                raise _Refused(
                    admin_error(
                        409, "destination_exists", f"A destination named {fields.name!r} exists already."
                    )
                ) from None
            return _json(status(self._backends, registry, stored), 201)

        return await self._run(added)

    async def show(self, request: Request) -> Response:
        """``GET /v1/destinations/NAME``: delivered, retrying, dead, lag, last error."""
        name = request.path_params["name"]
        return await self._run(lambda r: _json(status(self._backends, r, self._get(r, name))))

    async def update(self, request: Request) -> Response:
        """``PATCH /v1/destinations/NAME`` with the fields to change."""
        name, body = request.path_params["name"], await request.body()

        def updated(registry: DestinationRegistry) -> Response:
            fields = _decode(body, _Fields)
            if fields.name not in (None, name) or fields.format is not None:
                raise _Refused(
                    admin_error(400, "invalid_body", "name and format cannot change: remove and add instead.")
                )
            changed = self._checked(dataclasses.replace(self._get(registry, name), **_changes(fields)))
            return _json(status(self._backends, registry, registry.update(changed)))

        return await self._run(updated)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        name = request.path_params["name"]

        def switched(registry: DestinationRegistry) -> Response:
            self._get(registry, name)
            return _json(status(self._backends, registry, registry.set_enabled(name, enabled)))

        return await self._run(switched)

    async def enable(self, request: Request) -> Response:
        return await self._set_enabled(request, True)

    async def disable(self, request: Request) -> Response:
        return await self._set_enabled(request, False)

    async def remove(self, request: Request) -> Response:
        """``DELETE /v1/destinations/NAME``: gone with its credentials (its dead letters stay)."""
        name = request.path_params["name"]

        def removed(registry: DestinationRegistry) -> Response:
            self._get(registry, name)
            return _json({"removed": registry.remove(name).name})

        return await self._run(removed)

    async def dead(self, request: Request) -> Response:
        """``GET /v1/destinations/NAME/dead``: dead letters not replayed yet, events included."""
        name = request.path_params["name"]

        def letters(registry: DestinationRegistry) -> Response:
            rows = [
                {
                    "id": x.id,
                    "seq": x.seq,
                    "type": x.type,
                    "reason": x.reason,
                    "attempts": x.attempts,
                    "failed_at": iso(x.failed_at_ms),
                    "event": msgspec.json.decode(x.body),
                }
                for x in outstanding(self._backends, self._get(registry, name))
            ]
            return _json({"dead": rows})

        return await self._run(letters)

    async def replay(self, request: Request) -> Response:
        """``POST /v1/destinations/NAME/replay`` with ``{"dead": true}``, ``{"since": TIME}`` or
        ``{"after": SEQ}``: answers with the summary once done."""
        # Imported here: a replay sends (httpx), which an HTTP worker needs for nothing else.
        from trackyard.destinations import replay

        name, body = request.path_params["name"], await request.body()

        def replayed(registry: DestinationRegistry) -> Response:
            destination = self._get(registry, name)
            asked = _decode(body, _Replay)
            if sum((asked.dead, asked.since is not None, asked.after is not None)) != 1:
                raise _Refused(
                    admin_error(400, "invalid_body", 'Give exactly one of "dead", "since" or "after".')
                )
            if asked.dead:
                plan = replay.plan_dead(self._backends, destination)
            elif asked.since is not None:
                try:
                    moment = replay.parse_since(asked.since)
                except replay.BadTime as error:
                    raise _Refused(admin_error(400, "invalid_since", str(error))) from None
                plan = replay.plan_after(self._backends, replay.first_seq_since(self._backends, moment) - 1)
            else:
                assert asked.after is not None
                plan = replay.plan_after(self._backends, max(asked.after, 0))
            summary = replay.run(self._backends, registry, destination, plan)
            return _json(
                {
                    "total": summary.total,
                    "delivered": summary.delivered,
                    "dead": summary.dead,
                    "filtered": summary.filtered,
                    "seconds": round(summary.seconds, 3),
                }
            )

        return await self._run(replayed)

"""One way in for every wire format: authorize, limit, normalize, records and rejects, commit.

A route reads the body and hands it over as an :class:`Incoming`; :func:`accept` does the
rest and returns what the route answers with, or raises ``IngestError``. Every request
refused once its source is known (bad body, bad JSON, a malformed or oversized batch, an
invalid event) is kept in the rejects store here, the same way for every format. A refusal
for wrong credentials is kept without a source, sampled and without its body
(``trackyard.ingest.auth_failures``: anyone can send those). Refusals that retrying cures
(a rate limit, an overloaded or unavailable store) are not kept, since the client sends
those again.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from trackyard.errors import CallError, IngestError
from trackyard.event import now_micros
from trackyard.ingest.auth import AUTH_REFUSALS, project_source, resolve_write_key
from trackyard.ingest.collector import Collector
from trackyard.storage.base import EventRecord, RejectRecord, Source
from trackyard.wire.base import Credentials, Decoded, Format, Receipt, source_tag

#: The most of a refused body or item the rejects store keeps; the rest is cut, and the
#: reject's message says how large the payload was.
MAX_KEPT_BYTES: Final = 64 * 1024
#: The reject code of a valid item refused only because another one in its batch was not.
BATCH_REFUSED: Final = "batch_refused"

#: The source of the request being served, for the access log. Each request runs in an
#: asyncio task of its own, so the value set here is that request's alone.
request_source: ContextVar[str] = ContextVar("trackyard_request_source", default="")

# "writeKey": "<anything but a quote>", with any spacing; works on invalid JSON too.
_WRITE_KEY_FIELD = re.compile(rb'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


@dataclass(slots=True)
class Incoming:
    """A request as the transport hands it over: where it came, what it carried, its body."""

    route: str
    body: bytes
    authorization: str | None = None
    #: A key in the URL path (Koala's, Bloomreach's project token).
    path_key: str | None = None
    #: A key in the query string (``?writeKey=``, Bloomreach's ``?access_token=``).
    query_key: str | None = None
    client_ip: str | None = None
    #: Why the body could not be read (too large, bad gzip); ``body`` is then empty.
    unread: IngestError | None = None


@dataclass(slots=True)
class Accepted:
    """A committed request: what it decoded to, which items were rejected alone, and when."""

    #: Its ``items`` only for a format that answers from them (``Format.answers_from_items``).
    decoded: Decoded
    rejected: list[tuple[int, CallError]]
    received_at_us: int


async def authorize(collector: Collector, credentials: Credentials, events: int) -> Source:
    """The source ``credentials`` name, if it may send ``events`` events now."""
    source = await _authenticate(collector, credentials)
    collector.limiter.take(source, events)
    return source


async def _authenticate(collector: Collector, credentials: Credentials) -> Source:
    if credentials.project is None:  # no secret to check off the event loop: no coroutine either
        return resolve_write_key(credentials, collector.sources)
    return await project_source(credentials, collector.sources, collector.secrets)


def _credentials(fmt: Format[Any], incoming: Incoming, body_keys: tuple[str, ...]) -> Credentials:
    return fmt.credentials(incoming.authorization, incoming.path_key, incoming.query_key, body_keys)


async def accept(collector: Collector, fmt: Format[Any], incoming: Incoming) -> Accepted:
    """Take one request of ``fmt`` from the transport to the store, or refuse it."""
    try:
        return await _accept(collector, fmt, incoming)
    except IngestError as refused:
        if collector.metrics is not None:
            collector.metrics.refused(fmt.name, refused.code)
        if refused.code in AUTH_REFUSALS:
            await collector.auth_failures.keep(collector.commit, incoming.route, incoming.client_ip, refused)
        raise


async def _accept(collector: Collector, fmt: Format[Any], incoming: Incoming) -> Accepted:
    received_at_us = now_micros()
    source: Source | None = None
    if not fmt.keys_in_body:
        # The key travels outside the body: a stranger is refused before anything is decoded.
        source = await _authenticate(collector, _credentials(fmt, incoming, ()))
    try:
        if incoming.unread is not None:
            raise incoming.unread
        decoded = fmt.decode(incoming.body)
    except IngestError as refused:
        if source is None:
            source = collector.sources.known(_credentials(fmt, incoming, tuple(refused.write_keys)).forms)
        if source is not None:
            if collector.settings.access_log:
                request_source.set(source.name)
            await _keep(collector, fmt, source, incoming, received_at_us, refused)
        raise
    if source is None:
        credentials = _credentials(fmt, incoming, decoded.write_keys)
        if credentials.project is None:  # the usual case, without a coroutine
            source = resolve_write_key(credentials, collector.sources)
        else:
            source = await _authenticate(collector, credentials)
    if collector.settings.access_log:  # a ContextVar.set costs on every request: only for its reader
        request_source.set(source.name)
    collector.limiter.take(source, len(decoded.items) if decoded.cost is None else decoded.cost)
    receipt = Receipt(
        incoming.route,
        received_at_us,
        source_tag(source.id, source.name, fmt.name, incoming.route),
        incoming.client_ip,
        source.write_key,
        decoded.sent_at,
        decoded.context,
        decoded.integrations,
    )
    source_id = source.id
    received_at_ms = received_at_us // 1000
    policy = fmt.policy
    normalize = fmt.normalize
    events: list[EventRecord] = []
    rejected: list[tuple[int, CallError]] = []
    for index, item in enumerate(decoded.items):
        try:
            normalized = normalize(item, receipt)
        except CallError as error:
            rejected.append((index, error))
            if policy == "whole":
                break
            continue
        if normalized is not None:
            message_id, kind, body = normalized
            events.append(EventRecord(source_id, message_id, kind, received_at_ms, body))
    if rejected and policy != "each":
        await _refuse(collector, fmt, source, incoming, received_at_us, decoded, rejected)
    rejects: list[RejectRecord] = []
    if rejected:
        items, route = decoded.items, incoming.route
        rejects = [
            _reject(source, route, received_at_us, error.code, error.message, i, fmt.item_bytes(items[i]))
            for i, error in rejected
        ]
        del items
    received = len(decoded.items)
    if not fmt.answers_from_items:
        # Under overload the requests waiting for the writer are most of a worker's memory:
        # their events are needed, not the body they came in (which the items, msgspec.Raw
        # views, keep alive), about a third of what each request holds.
        incoming.body = b""
        decoded.items = ()
        item = None
    result = await collector.commit(events, rejects) if events or rejects else None
    if collector.metrics is not None:
        collector.metrics.committed(source, fmt.name, received, result, rejects)
    return Accepted(decoded, rejected, received_at_us)


async def _refuse(
    collector: Collector,
    fmt: Format[Any],
    source: Source,
    incoming: Incoming,
    received_at_us: int,
    decoded: Decoded,
    rejected: list[tuple[int, CallError]],
) -> None:
    """Refuse the request whole, as its format does, keeping what it carried; always raises."""
    if fmt.policy == "whole":
        error = rejected[0][1]
        refused = IngestError(error.code, error.message, of_event=True)
        await _keep(collector, fmt, source, incoming, received_at_us, refused, len(decoded.items))
        raise refused
    # Atomic: every item is kept, the invalid ones with their reason, the others as refused
    # with the batch, so that the client's retry is the only copy that gets stored.
    refused = fmt.batch_refused(rejected)
    reasons = {index: error for index, error in rejected}
    rejects = []
    for index, item in enumerate(decoded.items):
        error = reasons.get(index) or CallError(BATCH_REFUSED, refused.message)
        rejects.append(
            _reject(
                source, incoming.route, received_at_us, error.code, error.message, index, fmt.item_bytes(item)
            )
        )
    await _commit_rejects(collector, fmt, source, len(decoded.items), rejects)
    raise refused


async def _commit_rejects(
    collector: Collector, fmt: Format[Any], source: Source, received: int, rejects: list[RejectRecord]
) -> None:
    await collector.commit((), rejects)
    if collector.metrics is not None:
        collector.metrics.committed(source, fmt.name, received, None, rejects)


async def _keep(
    collector: Collector,
    fmt: Format[Any],
    source: Source,
    incoming: Incoming,
    received_at_us: int,
    refused: IngestError,
    received: int = 0,
) -> None:
    """Keep a refused request: its body, or its parts when the format keeps them apart."""
    route, code, message = incoming.route, refused.code, refused.message
    if refused.parts:
        rejects = [
            _reject(source, route, received_at_us, code, message, index, part)
            for index, part in enumerate(refused.parts)
        ]
    else:
        rejects = [_reject(source, route, received_at_us, code, message, None, incoming.body)]
    await _commit_rejects(collector, fmt, source, received, rejects)


def _reject(
    source: Source, route: str, received_at_us: int, code: str, message: str, index: int | None, body: bytes
) -> RejectRecord:
    """A refusal as kept: its bytes less any write key (never stored), cut at ``MAX_KEPT_BYTES``."""
    size = len(body)
    if b"writeKey" in body:
        body = _WRITE_KEY_FIELD.sub(rb'\1"[redacted]"', body)
    if len(body) > MAX_KEPT_BYTES:
        message += f" (The payload had {size:,} bytes; the first {MAX_KEPT_BYTES:,} are kept.)"
        body = body[:MAX_KEPT_BYTES]
    return RejectRecord(source.id, received_at_us // 1000, route, code, message, index, body)

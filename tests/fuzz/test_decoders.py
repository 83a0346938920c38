"""Every wire decoder, in process, against hostile bodies: it either returns canonical events
that encode back to JSON, or refuses with the client error (IngestError/CallError) its route
turns into a 4xx. Anything else would be a 500."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.cases import UNDECODABLE, bodies, gzip_bomb
from tests.strategies import json_values
from trackyard.errors import CallError, IngestError
from trackyard.http.answers import status_of
from trackyard.http.body import read_body
from trackyard.wire import bloomreach, koala, segment, vitally
from trackyard.wire._json import decode_item, decode_json
from trackyard.wire._segment_typed import normalize_raw
from trackyard.wire.base import Receipt

_TAG = {"id": 1, "name": "fuzz", "format": "fuzz", "route": "/fuzz"}
_NOW = 1_750_000_000_000_000


def _segment_single(body: bytes) -> list[Any]:
    receipt = Receipt("/v1/track", _NOW, _TAG, "127.0.0.1", "key")
    return [segment.normalize(decode_json(body), "track", receipt)]


def _segment_batch(body: bytes) -> list[Any]:
    envelope = segment.decode_envelope(body)
    receipt = Receipt("/v1/b", _NOW, _TAG, "127.0.0.1", "key", envelope.sentAt, envelope.context)
    out = []
    for raw in envelope.batch:
        try:
            out.append(segment.normalize(decode_item(raw), None, receipt))
        except CallError:
            continue  # one item refused alone, as the route does
    return out


def _segment_typed(body: bytes) -> list[Any]:
    """The routes' fast path, which must never raise: it answers ``None`` and leaves the
    call to the reference path (checked for agreement in tests/wire/test_segment_typed.py)."""
    receipt = Receipt("/v1/b", _NOW, _TAG, "127.0.0.1", "key")
    out = [normalize_raw(body, "track", receipt)]
    with contextlib.suppress(IngestError):
        out += [normalize_raw(raw, None, receipt) for raw in segment.decode_envelope(body).batch]
    accepted = [fast for fast in out if fast is not None]
    for _, _, event_json in accepted:
        assert isinstance(msgspec.json.decode(event_json), dict)  # stored JSON decodes back
    return accepted


def _koala(body: bytes) -> list[Any]:
    return list(koala.decode(body, "profile", Receipt(koala.PROFILE_ROUTE, _NOW, _TAG)))


def _bloomreach(body: bytes) -> list[Any]:
    receipt = Receipt("/fuzz", _NOW, _TAG)
    out = []
    for raw in bloomreach.decode_batch(body):
        try:
            command = bloomreach.decode_json(raw)
            if isinstance(command, dict) and bloomreach.command_name(command) != bloomreach.SYSTEM_TIME:
                out.append(bloomreach.decode(command, receipt))
        except CallError:
            continue
    return out


def _vitally(body: bytes) -> list[Any]:
    receipt = Receipt("/fuzz", _NOW, _TAG)
    out = []
    for raw in vitally.decode_batch(body):
        try:
            out.append(vitally.decode(decode_item(raw), None, receipt))
        except CallError:
            continue
    return out


DECODERS: dict[str, Callable[[bytes], list[Any]]] = {
    "segment single": _segment_single,
    "segment batch": _segment_batch,
    "segment typed fast path": _segment_typed,
    "koala": _koala,
    "bloomreach": _bloomreach,
    "vitally": _vitally,
}

#: Field names of all four formats, so wrong-typed values reach past the first checks.
_FIELDS = st.sampled_from(
    [
        "type", "userId", "anonymousId", "event", "name", "properties", "traits", "context",
        "integrations", "timestamp", "sentAt", "messageId", "groupId", "previousId", "batch",
        "profile_id", "email", "events", "identifies", "page_views", "message_id", "commands",
        "data", "customer_ids", "event_type", "accountId", "organizationId", "writeKey",
    ]
)  # fmt: skip
_shaped = st.recursive(
    st.dictionaries(_FIELDS, json_values, max_size=6),
    lambda inner: st.dictionaries(_FIELDS, inner | json_values, max_size=4) | st.lists(inner, max_size=4),
    max_leaves=20,
)
hostile = st.one_of(bodies().map(lambda pair: pair[0]), _shaped.map(msgspec.json.encode))


def _assert_client_error_or_events(decoder: Callable[[bytes], list[Any]], body: bytes) -> None:
    try:
        decoded = decoder(body)
    except (IngestError, CallError) as error:
        assert error.code and error.message
        return
    for message_id, kind, event in decoded:
        assert isinstance(message_id, str) and message_id
        assert isinstance(kind, str)
        msgspec.json.encode(event)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=hostile)
@example(body=b'{"userId": "a", "userId": 1, "event": "E", "event": null}')
@example(body=b'{"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"n": 1e400}}]}')
@example(body=b"[" * 900 + b"]" * 900)
# Unhashable values where a name is looked up: {"type": []} was once a TypeError (a 500).
@example(body=b'{"batch": [{"type": [], "userId": "u"}], "type": {}, "userId": "u"}')
@example(body=b'[{"type": {}, "userId": "u", "event": []}]')
@example(body=b'{"commands": [{"name": [], "data": {}}, {"name": "customers/events", "data": {"x": []}}]}')
@example(body=b'{"profile_id": "p", "events": [{"type": [], "event": {}}], "identifies": [{"type": {}}]}')
def test_decoders_refuse_hostile_bodies_with_client_errors(name: str, body: bytes) -> None:
    _assert_client_error_or_events(DECODERS[name], body)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoders_refuse_undecodable_json(name: str) -> None:
    for body in UNDECODABLE.values():
        _assert_client_error_or_events(DECODERS[name], body)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(pair=bodies(), chunk=st.integers(1, 70_000), limit=st.sampled_from([32_768, 512_000]))
def test_reading_a_body_only_ever_refuses_with_a_400(
    pair: tuple[bytes, str | None], chunk: int, limit: int
) -> None:
    body, encoding = pair
    try:
        out = asyncio.run(read_body(_chunks(body, chunk), encoding, limit, "request"))
    except IngestError as error:
        assert status_of(error) == 400 and error.code in (
            "payload_too_large", "invalid_gzip", "unsupported_encoding",
        )  # fmt: skip
        return
    assert len(out) <= limit


def test_a_gzip_bomb_is_refused_after_reading_about_the_limit() -> None:
    with pytest.raises(IngestError) as refused:
        asyncio.run(read_body(_chunks(gzip_bomb(), 16_384), "gzip", 512_000, "request"))
    assert refused.value.code == "payload_too_large"

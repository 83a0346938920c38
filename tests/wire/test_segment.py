"""The Segment decoder, property by property: everything the client sent is kept."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from trackyard.errors import CallError
from trackyard.event import CANONICAL_FIELDS, format_timestamp, parse_timestamp
from trackyard.wire import segment as wire
from trackyard.wire._json import decode_json

RECEIVED = parse_timestamp("2026-01-02T03:04:05.678Z")
ENRICHED = {"receivedAt", "timestamp", "originalTimestamp", "sentAt", "version", "source", "messageId"}

ids = st.text(min_size=1, max_size=30)


@st.composite
def calls(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted({"identify", "track", "page", "screen", "group", "alias"})))
    call: dict[str, Any] = {"type": kind, "userId": draw(ids)}
    if kind != "alias" and draw(st.booleans()):
        call["anonymousId"] = draw(ids)
    if kind == "track":
        call["event"] = draw(ids)
    if kind == "group":
        call["groupId"] = draw(ids)
        call["traits"] = draw(json_objects)
    if kind == "alias":
        call["previousId"] = draw(ids)
    if kind in ("page", "screen") and draw(st.booleans()):
        call["name"] = draw(st.text(max_size=20))
    if kind in ("track", "page", "screen"):
        call["properties"] = draw(json_objects)
    if kind == "identify":
        call["traits"] = draw(json_objects)
    if draw(st.booleans()):
        call["context"] = draw(json_objects)
    if draw(st.booleans()):
        call["messageId"] = draw(st.text(min_size=1, max_size=100))
    # Fields outside the Spec are kept as sent.
    extra = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(
                lambda k: k not in CANONICAL_FIELDS and k not in ("writeKey", "category")
            ),
            json_values,
            max_size=3,
        )
    )
    return {**extra, **call}


def receipt(route: str = "/v1/batch") -> wire.Receipt:
    return wire.Receipt(
        route=route,
        received_at_us=RECEIVED,
        client_ip="10.0.0.1",
        write_key="k",
        source_tag={"id": 1, "name": "s", "format": "segment", "route": route},
    )


@given(calls())
def test_every_field_the_client_sent_is_kept(call: dict[str, Any]) -> None:
    original = copy.deepcopy(call)
    message_id, kind, event = wire.normalize({**call, "writeKey": "k"}, None, receipt())
    assert kind == original["type"] and message_id == event["messageId"]
    assert "writeKey" not in event
    for key, value in original.items():
        assert event[key] == value, key
    assert set(event) - set(original) <= ENRICHED
    assert event["receivedAt"] == "2026-01-02T03:04:05.678Z" and event["timestamp"] == event["receivedAt"]
    # Canonical order first, then whatever else the client sent.
    canonical = [k for k in event if k in CANONICAL_FIELDS]
    assert canonical == [k for k in CANONICAL_FIELDS if k in event]
    assert decode_json(wire.encode(event)) == event


@given(
    happened=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    delay_ms=st.integers(0, 7 * 86_400_000),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
)
def test_skew_correction_keeps_the_delay_between_event_and_send(
    happened: datetime, delay_ms: int, offset_minutes: int
) -> None:
    zone = timedelta(minutes=offset_minutes)
    sent = happened + timedelta(milliseconds=delay_ms)
    call = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "timestamp": happened.astimezone(timezone(zone)).isoformat(),
        "sentAt": sent.isoformat(),
    }
    client_time = call["timestamp"]
    _, _, event = wire.normalize(call, None, receipt())
    expected = RECEIVED - (parse_timestamp(sent.isoformat()) - parse_timestamp(happened.isoformat()))
    assert event["timestamp"] == format_timestamp(expected)
    assert event["originalTimestamp"] == client_time


def test_client_side_routes_get_the_callers_ip() -> None:
    _, _, browser = wire.normalize({"userId": "u", "event": "E"}, "track", receipt("/v1/t"))
    _, _, server = wire.normalize({"userId": "u", "event": "E"}, "track", receipt("/v1/track"))
    assert browser["context"] == {"ip": "10.0.0.1"} and "context" not in server


@given(st.sampled_from([[], {}, [1], {"a": "track"}, 5, None, True]))
def test_a_type_that_is_not_a_string_is_refused_not_a_crash(kind: Any) -> None:
    try:
        wire.normalize({"type": kind, "userId": "u"}, None, receipt())
    except CallError as error:
        assert error.code == "invalid_type"
    else:
        raise AssertionError("accepted")

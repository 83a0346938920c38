"""The Bloomreach command decoder and encoder: lossless round trip, mapping, validation."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_scalars, json_values
from trackyard.errors import CallError
from trackyard.event import format_timestamp, parse_timestamp
from trackyard.wire import bloomreach as wire
from trackyard.wire.base import Receipt

RECEIVED = parse_timestamp("2026-01-02T03:04:05.678Z")
TAG = {"id": 7, "name": "shop", "format": "bloomreach", "route": "/track/v2/projects/{projectToken}/batch"}
KNOWN_DATA_KEYS = {"customer_ids", "properties", "timestamp", "age", "update_timestamp", "event_type", "url"}

valid_ids = st.text(min_size=1, max_size=20).filter(wire.valid_id)
invalid_ids = (
    st.sampled_from(["", "---", "null", "undefined", "NULL"]) | st.none() | st.integers() | st.booleans()
)
# 1970 to 2100 in seconds, as float or int, and as ISO-8601 strings.
seconds = st.floats(0, 4_102_444_800, allow_nan=False) | st.integers(0, 4_102_444_800)
iso_times = st.integers(0, 4_102_444_800_000_000).map(format_timestamp)
times = st.none() | seconds | iso_times


def receipt() -> Receipt:
    return Receipt(route="/track/v2/projects/{projectToken}/batch", received_at_us=RECEIVED, source_tag=TAG)


@st.composite
def customer_ids(draw: st.DrawFn, required: bool) -> Any:
    ids: dict[str, Any] = draw(
        st.dictionaries(st.text(max_size=12), valid_ids, min_size=1 if required else 0, max_size=4)
    )
    for kind in draw(st.lists(st.sampled_from(["registered", "cookie"]), max_size=2)):
        ids[kind] = draw(valid_ids | invalid_ids)
    ids.update(draw(st.dictionaries(st.text(max_size=12), invalid_ids, max_size=2)))
    if required and not any(wire.valid_id(v) for v in ids.values()):
        ids[draw(st.text(max_size=12))] = draw(valid_ids)
    return ids


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(wire.STORED_COMMANDS)))
    data: dict[str, Any] = {
        key: value for key, value in draw(json_objects).items() if key not in KNOWN_DATA_KEYS
    }
    if name != wire.CLICKS or draw(st.booleans()):
        data["customer_ids"] = draw(customer_ids(required=name != wire.CLICKS))
    if name == wire.EVENTS:
        data["event_type"] = draw(st.text(min_size=1, max_size=12))
    if name == wire.CLICKS:
        data["url"] = draw(st.text(min_size=1, max_size=30))
    if draw(st.booleans()):
        data["properties"] = draw(st.none() | json_objects)
    if draw(st.booleans()):
        data["timestamp"] = draw(times)
    if draw(st.booleans()):
        data["age"] = draw(st.none() | st.floats(0, 10**6) | st.integers(0, 10**6))
    if name == wire.CUSTOMERS and draw(st.booleans()):
        data["update_timestamp"] = draw(times)
    command: dict[str, Any] = {"name": name, "data": data}
    if draw(st.booleans()):
        command["command_id"] = draw(json_scalars)
    if draw(st.booleans()):
        command["x_extra"] = draw(json_values)
    return command


def exact(value: Any) -> bytes:
    """JSON with sorted keys: equal only for the same keys, values and JSON types (1 is not 1.0)."""
    return msgspec.json.encode(value, order="sorted")


def stored(command: dict[str, Any]) -> dict[str, Any]:
    """Decode a command as the server does and read the event back as the store keeps it."""
    _, _, event = wire.decode(msgspec.json.decode(msgspec.json.encode(command)), receipt())
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event))
    return result


@settings(max_examples=300)
@given(commands())
def test_encode_of_decode_gives_back_the_exact_command(command: dict[str, Any]) -> None:
    assert exact(wire.encode(stored(command))) == exact(command)


@given(commands())
def test_the_message_id_ignores_key_order_and_command_id(command: dict[str, Any]) -> None:
    reordered = {**command, "data": dict(reversed(list(command["data"].items()))), "command_id": "other"}
    assert stored(command)["messageId"] == stored(reordered)["messageId"]


def test_customer_ids_map_to_user_anonymous_and_external_ids() -> None:
    event = stored(
        {
            "name": "customers/events",
            "data": {
                "customer_ids": {
                    "registered": "ann@x",
                    "cookie": "c-1",
                    "email_id": "ann@x",
                    "bad": "undefined",
                },
                "event_type": "purchase",
            },
        }
    )
    assert event["userId"] == "ann@x"
    assert event["anonymousId"] == "c-1"
    assert event["context"]["externalIds"] == [
        {"id": "ann@x", "type": "registered", "collection": "users", "encoding": "none"},
        {"id": "c-1", "type": "cookie", "collection": "users", "encoding": "none"},
        {"id": "ann@x", "type": "email_id", "collection": "users", "encoding": "none"},
    ]
    assert event["context"]["bloomreach"] == {
        "name": "customers/events",
        "data": {"customer_ids": {"bad": "undefined"}},
    }
    assert event["type"] == "track" and event["event"] == "purchase"


def test_without_registered_there_is_no_user_id() -> None:
    event = stored({"name": "customers", "data": {"customer_ids": {"cookie": "c-1"}, "properties": {"a": 1}}})
    assert "userId" not in event and event["anonymousId"] == "c-1"
    assert event["type"] == "identify" and event["traits"] == {"a": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123456.78, "1970-01-02T10:17:36.780Z"),
        (1533833360, "2018-08-09T16:49:20.000Z"),
        ("2024-05-01T12:00:00.123Z", "2024-05-01T12:00:00.123Z"),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00.000Z"),
        ("1533833360.5", "2018-08-09T16:49:20.500Z"),
    ],
)
def test_timestamps_as_seconds_or_iso(value: Any, expected: str) -> None:
    event = stored(
        {
            "name": "customers/events",
            "data": {"customer_ids": {"registered": "a"}, "event_type": "e", "timestamp": value},
        }
    )
    assert event["timestamp"] == expected
    assert event["originalTimestamp"] == value


def test_null_timestamp_means_receipt_time_and_age_counts_back_from_it() -> None:
    base = {"customer_ids": {"registered": "a"}, "event_type": "e", "timestamp": None, "properties": None}
    event = stored({"name": "customers/events", "data": base})
    assert event["timestamp"] == event["receivedAt"] == "2026-01-02T03:04:05.678Z"
    assert "originalTimestamp" not in event and "properties" not in event
    aged = stored({"name": "customers/events", "data": {**base, "age": 65.5}})
    assert aged["timestamp"] == "2026-01-02T03:03:00.178Z"
    # A timestamp, when given, wins over age.
    both = stored({"name": "customers/events", "data": {**base, "age": 65.5, "timestamp": 0}})
    assert both["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_update_timestamp_sets_the_time_of_a_customer_update() -> None:
    event = stored(
        {
            "name": "customers",
            "data": {
                "customer_ids": {"registered": "a"},
                "properties": {"x": 1},
                "update_timestamp": 1700000000.25,
                "timestamp": 1,
            },
        }
    )
    assert event["timestamp"] == "2023-11-14T22:13:20.250Z"
    assert event["context"]["bloomreach"]["data"] == {"update_timestamp": 1700000000.25}


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("customers", {"properties": {}}, wire.NO_ID),
        ("customers", {"customer_ids": {}}, wire.NO_ID),
        ("customers", {"customer_ids": None}, wire.NO_ID),
        ("customers", {"customer_ids": {"registered": "undefined", "cookie": "--"}}, wire.NO_VALID_ID),
        ("customers/events", {"customer_ids": {"registered": "a"}}, wire.NO_EVENT_TYPE),
        ("customers/events", {"customer_ids": {"registered": "a"}, "event_type": ""}, wire.NO_EVENT_TYPE),
        (
            "customers/events",
            {"customer_ids": {"registered": "a"}, "event_type": 3},
            "Field 'event_type' must be a string.",
        ),
        ("campaigns/clicks", {"properties": {}}, "Field 'url' is required."),
        (
            "customers",
            {"customer_ids": {"registered": "a"}, "properties": [1]},
            "Field 'properties' must be an object.",
        ),
        (
            "customers/events",
            {"customer_ids": {"registered": "a"}, "event_type": "e", "timestamp": "soon"},
            None,
        ),
        (
            "customers/events",
            {"customer_ids": {"registered": "a"}, "event_type": "e", "timestamp": 1.7e12 * 1000},
            None,
        ),
        ("customers/events", {"customer_ids": {"registered": "a"}, "event_type": "e", "age": "1"}, None),
        ("nope", {}, None),
    ],
)
def test_invalid_commands_get_bloomreach_texts(name: str, data: dict[str, Any], message: str | None) -> None:
    with pytest.raises(CallError) as caught:
        wire.decode({"name": name, "data": data}, receipt())
    if message is not None:
        assert caught.value.message == message


def test_property_values_must_be_under_16_kb() -> None:
    def event(value: Any) -> dict[str, Any]:
        return {
            "name": "customers/events",
            "data": {"customer_ids": {"registered": "a"}, "event_type": "e", "properties": {"note": value}},
        }

    assert stored(event("x" * (16 * 1024 - 1)))["properties"]["note"]
    with pytest.raises(CallError, match="Value of event property 'note' must be less than 16 KBytes."):
        wire.decode(event("x" * 16 * 1024), receipt())
    # Multi-byte characters count in UTF-8 bytes; other values by their JSON size.
    with pytest.raises(CallError):
        wire.decode(event("é" * 8 * 1024), receipt())
    with pytest.raises(CallError):
        wire.decode(event(["x" * (16 * 1024 - 4)]), receipt())


def test_campaign_click_without_ids_is_a_track_event() -> None:
    click = {"url": "https://shop.example/?xnpe_cmp=abc", "age": 3.5, "properties": {"platform": "Android"}}
    event = stored({"name": "campaigns/clicks", "data": click})
    assert event["type"] == "track" and event["event"] == "campaign_click"
    assert event["properties"] == {"platform": "Android"}
    assert "externalIds" not in event["context"]
    assert wire.encode(event) == {"name": "campaigns/clicks", "data": click}


def test_events_of_other_formats_encode_as_commands() -> None:
    segment = {
        "type": "track",
        "userId": "u1",
        "anonymousId": "a1",
        "event": "Order Completed",
        "properties": {"total": 3},
        "timestamp": "2024-05-01T12:00:00.500Z",
    }
    assert wire.encode(segment) == {
        "name": "customers/events",
        "data": {
            "customer_ids": {"registered": "u1", "cookie": "a1"},
            "event_type": "Order Completed",
            "properties": {"total": 3},
            "timestamp": 1714564800.5,
        },
    }
    identify = wire.encode({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}})
    assert identify == {
        "name": "customers",
        "data": {"customer_ids": {"registered": "u1"}, "properties": {"plan": "pro"}},
    }

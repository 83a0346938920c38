"""The typed fast path agrees with the reference ``normalize`` on every call it accepts."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from tests.wire.test_segment import RECEIVED, calls
from trackyard.errors import CallError
from trackyard.event import CANONICAL_FIELDS
from trackyard.wire import segment as wire
from trackyard.wire._segment_typed import normalize_raw

TIMESTAMPS = st.sampled_from(
    [
        "2026-01-01T12:00:00.000Z",
        "2026-01-01T12:00:00Z",
        "2026-01-01T13:00:00+01:00",
        "yesterday",
        "",
        "9999-12-31T23:59:59Z",
    ]
)
#: Values that are valid somewhere in a call and wrong elsewhere.
ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from([None, "", 0, 42, True, [], {}, "x", {"a": 1}, 1.5])
FIELDS = [*CANONICAL_FIELDS, "writeKey", "category", "channel", "_metadata", "options"]


@st.composite
def perturbed_calls(draw: st.DrawFn) -> dict[str, Any]:
    """Plain calls, some with a field broken, nulled, emptied or added."""
    call = draw(calls())
    if draw(st.booleans()):  # without the random fields outside the Spec, which the fast path refuses
        call = {key: value for key, value in call.items() if key in FIELDS}
    for _ in range(draw(st.integers(0, 2))):
        call[draw(st.sampled_from(FIELDS))] = draw(ODD_VALUES | json_values)
    if draw(st.booleans()):
        call["timestamp"] = draw(TIMESTAMPS)
    if draw(st.booleans()):
        call["sentAt"] = draw(TIMESTAMPS)
    if draw(st.booleans()):  # RudderStack's SDKs send only originalTimestamp
        call.pop("timestamp", None)
        call["originalTimestamp"] = draw(TIMESTAMPS | ODD_VALUES)
    if draw(st.booleans()):
        call["writeKey"] = draw(st.sampled_from(["k", "other"]))
    if draw(st.booleans()):
        call["_metadata"] = {"bundled": ["Segment.io"]}
    return call


@st.composite
def receipts(draw: st.DrawFn) -> wire.Receipt:
    route = draw(st.sampled_from(["/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/import"]))
    return wire.Receipt(
        route=route,
        received_at_us=RECEIVED,
        client_ip=draw(st.sampled_from(["10.0.0.1", None])),
        write_key="k",
        source_tag={"id": 1, "name": "s", "format": "segment", "route": route},
        sent_at=draw(st.sampled_from([None, "2026-01-01T12:00:01.000Z"])),
        context=draw(st.none() | json_objects),
        integrations=draw(st.none() | json_objects),
    )


def _reference(item: dict[str, Any], call_type: str | None, receipt: wire.Receipt) -> Any:
    try:
        return wire.normalize(copy.deepcopy(item), call_type, receipt)
    except CallError:
        return None


@settings(max_examples=400)
@given(perturbed_calls(), st.sampled_from([None, "track", "identify"]), receipts())
def test_what_the_fast_path_accepts_the_reference_accepts_identically(
    item: dict[str, Any], call_type: str | None, receipt: wire.Receipt
) -> None:
    fast = normalize_raw(msgspec.json.encode(item), call_type, copy.deepcopy(receipt))
    if fast is None:
        return
    reference = _reference(item, call_type, receipt)
    assert reference is not None, "the fast path accepted a call the reference rejects"
    message_id, kind, event = reference
    fast_id, fast_kind, body = fast
    fast_event = msgspec.json.decode(body)
    assert fast_kind == kind
    if item.get("messageId"):
        assert fast_id == message_id
    else:  # both generated one
        assert fast_event["messageId"] == fast_id
        fast_event["messageId"] = event["messageId"]
    assert fast_event == event
    # The Spec's fields come first, in the canonical order, as the reference writes them.
    assert [k for k in fast_event if k in CANONICAL_FIELDS] == [k for k in event if k in CANONICAL_FIELDS]
    assert list(fast_event)[: len([k for k in event if k in CANONICAL_FIELDS])] == [
        k for k in event if k in CANONICAL_FIELDS
    ]


def test_the_calls_sdks_send_take_the_fast_path() -> None:
    receipt = wire.Receipt(
        "/v1/batch", RECEIVED, {"id": 1}, "10.0.0.1", "k", sent_at="2026-01-01T12:00:01.000Z"
    )
    sdk_calls = [
        # analytics-python
        {
            "type": "track",
            "event": "Signed Up",
            "userId": "u1",
            "properties": {"plan": "pro"},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            "integrations": {},
            "timestamp": "2026-01-01T12:00:00.123456+00:00",
            "messageId": "7c8c6b0a-3f00-4a36-8f5e-6a5b2c1d0e9f",
        },
        # @rudderstack/rudder-sdk-node and @rudderstack/analytics-js: no timestamp
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u1",
            "anonymousId": "a1",
            "channel": "server",
            "properties": {"revenue": 1},
            "context": {"library": {"name": "analytics-node", "version": "3.0.13"}},
            "integrations": {"All": True},
            "originalTimestamp": "2026-01-01T11:00:00.000Z",
            "messageId": "c0a9e6c4-9a3d-4f7e-9a61-3e6f6f3ad8e1",
        },
        # analytics-node
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "ann@example.com"},
            "context": {"library": {"name": "@segment/analytics-node", "version": "3.1.0"}},
            "_metadata": {"nodeVersion": "20.20.2", "jsRuntime": "node"},
            "messageId": "node-3f1c",
            "timestamp": "2026-01-01T12:00:00.000Z",
        },
    ]
    for call in sdk_calls:
        assert normalize_raw(msgspec.json.encode(call), None, receipt) is not None, call["type"]


def test_an_original_timestamp_alone_is_the_client_time_with_the_skew_corrected() -> None:
    """RudderStack's SDKs send no ``timestamp``: an event backdated an hour stays an hour back."""
    sent_at = "2026-01-02T03:04:06.678Z"  # the client's clock runs a second ahead of the server's
    call = {"type": "track", "event": "E", "userId": "u", "originalTimestamp": "2026-01-02T02:04:06.678Z"}
    receipt = wire.Receipt("/v1/batch", RECEIVED, {"id": 1}, None, "k", sent_at=sent_at)
    fast = normalize_raw(msgspec.json.encode(call), None, copy.deepcopy(receipt))
    assert fast is not None
    _, _, reference = wire.normalize(copy.deepcopy(call), None, receipt)
    for event in (msgspec.json.decode(fast[2]), reference):
        assert event["originalTimestamp"] == "2026-01-02T02:04:06.678Z"
        assert event["timestamp"] == "2026-01-02T02:04:05.678Z"  # receivedAt - (sentAt - original)


def test_a_bad_original_timestamp_alone_is_refused_by_name() -> None:
    receipt = wire.Receipt("/v1/batch", RECEIVED, {"id": 1}, None, "k")
    call = {"type": "track", "event": "E", "userId": "u", "originalTimestamp": "yesterday"}
    assert normalize_raw(msgspec.json.encode(call), None, receipt) is None
    try:
        wire.normalize(call, None, receipt)
    except CallError as error:
        assert error.code == "invalid_timestamp" and "originalTimestamp" in error.message
    else:
        raise AssertionError("accepted")

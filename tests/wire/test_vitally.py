"""Vitally's wire format: decode then encode gives back every valid message exactly."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from trackyard.event import CANONICAL_FIELDS, EVENT_TYPES
from trackyard.wire import vitally as wire
from trackyard.wire.base import Receipt

KNOWN_KEYS = {
    "type",
    "messageId",
    "timestamp",
    "userId",
    "accountId",
    "organizationId",
    "traits",
    "event",
    "properties",
    "externalId",
    "customObjectId",
    "name",
}

ids = st.text(min_size=1, max_size=12) | st.integers(-(2**63), 2**63 - 1)
absent = st.none() | st.just("")
timestamps = st.sampled_from(
    ["2018-05-15T12:31:12.123Z", "2018-01-01T00:00:00Z", "2024-02-29T23:59:59+02:00", "2020-06-01T10:00:00.5"]
)
unknown_keys = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in KNOWN_KEYS), json_values, max_size=3
)

MISSING = object()


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value for an optional key: left out, null, or drawn from ``strategy``."""
    return st.just(MISSING) | st.none() | strategy


@st.composite
def messages(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    account, organization = optional(ids), optional(ids)
    if kind == "organization":
        fields |= {"organizationId": draw(ids), "traits": draw(optional(json_objects))}
    elif kind == "account":
        fields |= {
            "accountId": draw(ids),
            "traits": draw(optional(json_objects)),
            "organizationId": draw(organization),
        }
    elif kind == "user":
        which = draw(st.sampled_from(["account", "organization", "both"]))
        fields |= {
            "userId": draw(ids),
            "traits": draw(json_objects),
            "accountId": draw(ids) if which != "organization" else draw(optional(absent)),
            "organizationId": draw(ids) if which != "account" else draw(optional(absent)),
        }
    elif kind == "track":
        has_user = draw(st.booleans())
        fields |= {
            "userId": draw(ids) if has_user else draw(optional(absent)),
            "accountId": draw(account) if has_user else draw(ids),
            "organizationId": draw(organization),
            "event": draw(st.text(min_size=1, max_size=10)),
            "properties": draw(json_objects),
        }
    elif kind == "unlink":
        fields |= {"userId": draw(ids), "accountId": draw(ids)}
    else:
        fields |= {
            "externalId": draw(ids),
            "customObjectId": draw(ids),
            "name": draw(optional(st.text(max_size=10))),
            "traits": draw(json_objects),
            "accountId": draw(ids),
            "organizationId": draw(organization),
        }
    has_id = draw(st.booleans())
    fields["messageId"] = draw(ids) if has_id else draw(optional(absent))
    fields["timestamp"] = draw(optional(timestamps)) if has_id else draw(timestamps)
    message = {key: value for key, value in fields.items() if value is not MISSING}
    for key, value in draw(unknown_keys).items():
        message.setdefault(key, value)
    return message


def receipt() -> Receipt:
    return Receipt("/x", 1_700_000_000_000_000, {"id": 1, "name": "t", "format": "vitally", "route": "/x"})


def exact(value: Any) -> bytes:
    """JSON with sorted keys: equal bytes mean same keys, values and JSON types (1 is not 1.0)."""
    return msgspec.json.encode(value, order="sorted")


def round_trip(message: dict[str, Any], route_type: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    _, _, event = wire.decode(copy.deepcopy(message), route_type, receipt())
    # What the store keeps is JSON: decode the stored bytes, as any later encoder would.
    stored = msgspec.json.decode(msgspec.json.encode(event))
    return stored, wire.encode(stored, batched=route_type is None)


@pytest.mark.parametrize("kind", wire.MESSAGE_TYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_single_route_messages_round_trip_exactly(kind: str, data: st.DataObject) -> None:
    message = data.draw(messages(kind))
    if data.draw(st.booleans()):
        message["type"] = kind  # a client may send its batch elements to the single routes
    stored, back = round_trip(message, kind)
    assert exact(back) == exact(message)
    assert stored["type"] in EVENT_TYPES
    assert set(stored) <= set(CANONICAL_FIELDS)


@pytest.mark.parametrize("kind", wire.MESSAGE_TYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_batch_messages_round_trip_exactly(kind: str, data: st.DataObject) -> None:
    message = {**data.draw(messages(kind)), "type": kind}
    _, back = round_trip(message, None)
    assert exact(back) == exact(message)


@settings(max_examples=100, deadline=None)
@given(message=messages("user"))
def test_the_hash_dedup_key_ignores_key_order_and_the_type_key(message: dict[str, Any]) -> None:
    message.pop("messageId", None)
    message["timestamp"] = message.get("timestamp") or "2018-05-15T12:31:12.123Z"
    reversed_order = dict(reversed(list(message.items())))
    first, _, _ = wire.decode(copy.deepcopy(message), "user", receipt())
    second, _, _ = wire.decode({**reversed_order, "type": "user"}, None, receipt())
    assert first == second
    assert first.startswith("user:") and len(first) == len("user:") + 64

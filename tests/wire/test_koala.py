"""Koala's wire format: decode rules, and encode(decode(m)) == m for every valid request."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from trackyard.errors import CallError
from trackyard.wire import koala as wire
from trackyard.wire.base import Receipt

RECEIVED_US = 1_700_000_000_123_000
SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "koala-profile-batch-request.schema.json"


def receipt(level: wire.Level = "profile") -> Receipt:
    route = wire.PROFILE_ROUTE if level == "profile" else wire.ACCOUNT_ROUTE
    return Receipt(route, RECEIVED_US, {"id": 1, "name": "t", "format": "koala", "route": route})


def decode(message: Any, level: wire.Level = "profile") -> list[dict[str, Any]]:
    """Decode, then go through JSON as the store does, so the round trip sees stored events."""
    triples = wire.decode(json.dumps(message).encode(), level, receipt(level))
    return [msgspec.json.decode(msgspec.json.encode(event)) for _, _, event in triples]


# -- strategies: valid Koala requests, including unknown fields, nulls and odd timestamps --------

ids = st.text(min_size=1, max_size=12)


@st.composite
def sent_ats(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)))
    form = draw(st.sampled_from(["ms-z", "offset", "seconds-z", "naive", "micro"]))
    if form == "ms-z":
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if form == "offset":
        return moment.isoformat()
    if form == "seconds-z":
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if form == "naive":
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="microseconds")


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is absent (the sentinel ...), null, or a value."""
    return st.just(...) | st.none() | strategy


def unknown_fields(reserved: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text(max_size=8).filter(lambda k: k not in reserved), json_values, max_size=3)


def build(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not ...}


ENTRY_KEYS = {"type", "event", "name", "properties", "traits", "sent_at", "message_id", "email", "profile_id"}


@st.composite
def entries(draw: st.DrawFn, koala_type: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        **draw(unknown_fields(ENTRY_KEYS)),
        "type": koala_type,
        "message_id": draw(optional(ids | st.just(""))),
        "sent_at": draw(optional(sent_ats())),
    }
    if koala_type == "track":
        fields["event"] = draw(ids)
        fields["properties"] = draw(optional(json_objects))
    elif koala_type == "identify":
        fields["traits"] = draw(optional(json_objects))
    else:
        fields["name"] = draw(optional(st.text(max_size=8)))
        fields["properties"] = draw(optional(json_objects))
    return build(fields)


def entry_lists(koala_type: str, most: int) -> st.SearchStrategy[Any]:
    return st.just(...) | st.none() | st.lists(entries(koala_type), max_size=most)


IDENTITIES = {"profile": ("profile_id", "email"), "account": ("account_id", "domain")}


@st.composite
def requests(draw: st.DrawFn, level: wire.Level) -> dict[str, Any]:
    """A valid request: one or both identities (the other absent, null or empty), every list
    of the level absent, null or up to a few entries, plus unknown fields."""
    first, second = draw(st.permutations(IDENTITIES[level]))
    lists = wire.LISTS[level]
    fields: dict[str, Any] = {
        **draw(unknown_fields({*IDENTITIES[level], *lists})),
        first: draw(ids),
        second: draw(optional(ids | st.just(""))),
        "ip": draw(optional(st.text(max_size=15) | json_values)),
    }
    for name, (koala_type, _) in lists.items():
        fields[name] = draw(entry_lists(koala_type, 4))
    return build(fields)


# -- round trips -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(requests("profile"))
def test_profile_requests_round_trip_exactly(message: dict[str, Any]) -> None:
    assert wire.encode(decode(message)) == [wire.KoalaRequest("profile", message)]


@settings(max_examples=200, deadline=None)
@given(requests("account"))
def test_account_requests_round_trip_exactly(message: dict[str, Any]) -> None:
    assert wire.encode(decode(message, "account")) == [wire.KoalaRequest("account", message)]


@settings(max_examples=100, deadline=None)
@given(requests("profile"))
def test_every_event_is_canonical_and_dedups_on_message_id(message: dict[str, Any]) -> None:
    events = decode(message)
    sent = [e for name in ("events", "identifies", "page_views") for e in (message.get(name) or [])]
    assert len(events) == max(1, len(sent))
    for event in events:
        assert event["type"] in {"track", "identify", "page"}
        assert event["source"]["format"] == "koala"
        assert event["source"]["route"] == "/web/projects/{key}/batch"
        assert event["receivedAt"] == "2023-11-14T22:13:20.123Z"
        assert event.get("anonymousId") or event.get("userId")
    for entry, event in zip(sent, events, strict=False):
        if entry.get("message_id"):
            assert event["messageId"] == entry["message_id"]
        if entry.get("sent_at"):
            assert event["originalTimestamp"] == entry["sent_at"]


def test_the_seed_example_values_decode() -> None:
    schema = json.loads(SEED.read_text())
    example = {
        "profile_id": schema["properties"]["profile_id"]["example"],
        "email": schema["properties"]["email"]["example"],
        "events": [
            {
                "type": "track",
                "event": schema["$defs"]["TrackEvent"]["properties"]["event"]["example"],
                "message_id": "m-1",
                "sent_at": "2022-11-09T23:57:14.776Z",
                "properties": {"plan": "pro"},
            }
        ],
        "identifies": [{"type": "identify", "traits": {"billing_plan": "pro", "vip": True}}],
    }
    track, identify = decode(example)
    assert track["type"] == "track" and track["event"] == "Created Account"
    assert track["anonymousId"] == "3e6a2c18-3b02-40c4-b8d2-1842c193d3ba"
    assert track["userId"] == "person@example.com"
    assert track["context"]["externalIds"] == [
        {"id": "person@example.com", "type": "email", "collection": "users", "encoding": "none"}
    ]
    assert track["timestamp"] == "2022-11-09T23:57:14.776Z"
    assert track["messageId"] == "m-1"
    assert identify["traits"] == {"billing_plan": "pro", "vip": True}
    assert identify["timestamp"] == identify["receivedAt"]  # no sent_at: the receive time
    assert wire.encode([track, identify]) == [wire.KoalaRequest("profile", example)]


def test_account_calls_are_groups_and_account_events_name_their_group() -> None:
    message = {
        "account_id": "acct-1",
        "domain": "acme.com",
        "identifies": [{"type": "identify", "traits": {"name": "Acme", "group_id": "g"}}],
        "events": [{"type": "track", "event": "Renewed", "message_id": "r-1"}],
    }
    track, group = decode(message, "account")
    assert group["type"] == "group" and group["groupId"] == "acct-1"
    assert group["traits"] == {"name": "Acme", "group_id": "g"}
    assert track["type"] == "track" and track["context"]["groupId"] == "acct-1"
    assert "userId" not in track and "anonymousId" not in track
    assert {x["type"] for x in group["context"]["externalIds"]} == {"koala_account_id", "domain"}
    (only_domain,) = decode({"domain": "acme.com"}, "account")
    assert only_domain["type"] == "group" and only_domain["groupId"] == "acme.com"


def test_a_request_without_entries_is_one_identify_with_everything_kept() -> None:
    message: dict[str, Any] = {
        "profile_id": "p-1",
        "traits": {"plan": "pro"},
        "events": [],
        "page_views": None,
    }
    (event,) = decode(message)
    assert event["type"] == "identify" and event["anonymousId"] == "p-1"
    assert event["context"]["koala"]["request"] == {
        "traits": {"plan": "pro"},
        "events": [],
        "page_views": None,
    }
    assert wire.encode([event]) == [wire.KoalaRequest("profile", message)]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        ([], "invalid_request", "must be a JSON object"),
        ({"events": []}, "missing_identity", "Missing required field: email or profile_id"),
        ({"profile_id": "", "email": None}, "missing_identity", "email or profile_id"),
        ({"profile_id": 5}, "invalid_type", "profile_id must be a string, not a number"),
        ({"email": "a@b", "events": {}}, "invalid_type", "events must be an array, not an object"),
        ({"email": "a@b", "events": [1]}, "invalid_type", "events[0] must be an object"),
        ({"email": "a@b", "events": [{"event": "E"}]}, "invalid_type", 'events[0].type must be "track"'),
        (
            {"email": "a@b", "page_views": [{"type": "track"}]},
            "invalid_type",
            'page_views[0].type must be "page"',
        ),
        ({"email": "a@b", "events": [{"type": "track"}]}, "missing_event", "events[0] needs an event name"),
        ({"email": "a@b", "events": [{"type": "track", "event": ""}]}, "missing_event", "event name"),
        (
            {"email": "a@b", "events": [{"type": "track", "event": "E", "properties": []}]},
            "invalid_type",
            "events[0].properties must be an object, not an array",
        ),
        (
            {"email": "a@b", "identifies": [{"type": "identify", "traits": "x"}]},
            "invalid_type",
            "identifies[0].traits must be an object",
        ),
        (
            {"email": "a@b", "identifies": [{"type": "identify", "sent_at": "yesterday"}]},
            "invalid_timestamp",
            "identifies[0].sent_at must be an ISO-8601 date-time",
        ),
        (
            {"email": "a@b", "identifies": [{"type": "identify", "sent_at": 1667}]},
            "invalid_timestamp",
            "sent_at must be a string, not a number",
        ),
        (
            {"email": "a@b", "events": [{"type": "track", "event": "E", "message_id": 7}]},
            "invalid_type",
            "events[0].message_id must be a string",
        ),
        (
            {"email": "a@b", "events": [{"type": "track", "event": "E", "email": "c@d"}]},
            "different_person",
            "same person",
        ),
    ],
)
def test_invalid_profile_requests_are_refused_whole(message: Any, code: str, words: str) -> None:
    with pytest.raises(CallError) as caught:
        decode(message)
    assert caught.value.code == code
    assert words in caught.value.message


def test_thirty_entries_per_list_pass_and_thirty_one_do_not() -> None:
    entry = {"type": "page", "name": "Home"}
    assert len(decode({"profile_id": "p", "page_views": [entry] * 30, "events": []})) == 30
    with pytest.raises(CallError, match=r"page_views has 31 entries; Koala accepts at most 30"):
        decode({"profile_id": "p", "page_views": [entry] * 31})


def test_account_lists_have_no_thirty_cap_and_need_an_account() -> None:
    events = [{"type": "track", "event": "E"}] * 31
    assert len(decode({"domain": "acme.com", "events": events}, "account")) == 31
    with pytest.raises(CallError, match="Missing required field: domain or account_id"):
        decode({"profile_id": "p"}, "account")


def test_bad_json_is_a_call_error() -> None:
    with pytest.raises(CallError) as caught:
        wire.decode(b'{"email": ', "profile", receipt())
    assert caught.value.code == "invalid_json"


# -- best-effort encoding of other formats' events ----------------------------------------------


def test_segment_events_encode_to_koala_requests() -> None:
    base = {
        "anonymousId": "a-1",
        "context": {"traits": {"email": "x@y.z"}},
        "timestamp": "2024-01-01T00:00:00.000Z",
    }
    segment = [
        {**base, "type": "track", "messageId": "1", "event": "Paid", "properties": {"v": 1}},
        {**base, "type": "screen", "messageId": "2", "name": "Home"},
        {**base, "type": "alias", "messageId": "3", "previousId": "a-0", "userId": "u"},
        {"type": "group", "messageId": "4", "groupId": "acme", "traits": {"name": "Acme"}},
    ]
    profile, account = wire.encode(segment)
    assert profile.path == "/batch" and account.path == "/accounts/batch"
    assert profile.body == {
        "profile_id": "a-1",
        "email": "x@y.z",
        "events": [
            {
                "type": "track",
                "message_id": "1",
                "sent_at": "2024-01-01T00:00:00.000Z",
                "event": "Paid",
                "properties": {"v": 1},
            }
        ],
        "page_views": [
            {"type": "page", "message_id": "2", "sent_at": "2024-01-01T00:00:00.000Z", "name": "Home"}
        ],
    }
    assert account.body == {
        "account_id": "acme",
        "identifies": [{"type": "identify", "traits": {"name": "Acme"}, "message_id": "4"}],
    }


def test_encoding_splits_a_person_over_requests_of_thirty() -> None:
    event = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "m"}
    requests = wire.encode([event] * 61)
    assert [len(r.body["events"]) for r in requests] == [30, 30, 1]

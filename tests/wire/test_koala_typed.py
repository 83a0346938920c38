"""The typed fast path for delivering to Koala agrees with the reference ``entry_of`` on every
stored event it takes, and the ``koala`` kind's requests are byte for byte the reference's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import json_objects, json_values
from tests.wire.test_koala import receipt as koala_receipt
from tests.wire.test_koala import requests as koala_requests
from tests.wire.test_segment import calls
from tests.wire.test_segment import receipt as segment_receipt
from trackyard.destinations.kinds.base import OutgoingRequest, Skipped
from trackyard.destinations.kinds.koala import Koala
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import koala as wire
from trackyard.wire import segment
from trackyard.wire._koala_typed import entry_of_stored

#: Values that are right in one field and wrong in another.
ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [None, "", 0, 42, True, [], {}, "x", "a@b.example", {"a": 1}, 1.5, [{"type": "email", "id": 7}]]
)
EVENT_FIELDS = [
    "type",
    "messageId",
    "anonymousId",
    "userId",
    "event",
    "name",
    "properties",
    "traits",
    "timestamp",
    "originalTimestamp",
    "groupId",
    "context",
]
CONTEXT_FIELDS = ["externalIds", "traits", "koala", "library", "ip"]
EXTERNAL_IDS = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["email", "domain", "other"]), "id": st.text(max_size=6) | json_values}
    )
    | json_values,
    max_size=3,
)


@st.composite
def segment_events(draw: st.DrawFn) -> bytes:
    """A Segment call as trackyard stores it; half the time its userId is an email."""
    call = draw(calls())
    if draw(st.booleans()):
        call["userId"] = f"{call['userId']}@example.com"
    _, _, event = segment.normalize(call, None, segment_receipt())
    return msgspec.json.encode(event)


@st.composite
def perturbed_events(draw: st.DrawFn) -> bytes:
    """Events with the fields an entry reads present, absent, null or of an odd type."""
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["track", "page", "screen", "identify", "group", "alias"])),
        "messageId": draw(st.text(max_size=6)),
        "userId": draw(st.sampled_from(["u@example.com", "u", ""])),
    }
    for _ in range(draw(st.integers(0, 4))):
        event[draw(st.sampled_from(EVENT_FIELDS))] = draw(ODD_VALUES | json_values)
    if draw(st.booleans()):
        context: dict[str, Any] = draw(json_objects)
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(CONTEXT_FIELDS))
            context[name] = draw(EXTERNAL_IDS if name == "externalIds" else ODD_VALUES | json_objects)
        event["context"] = context
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=2)):
        event.pop(name, None)
    return msgspec.json.encode(event)


@st.composite
def koala_events(draw: st.DrawFn) -> bytes:
    """An event that came in as Koala (the exact path), as stored."""
    level: wire.Level = draw(st.sampled_from(["profile", "account"]))
    request = draw(koala_requests(level))
    triples = wire.decode(json.dumps(request).encode(), level, koala_receipt(level))
    return msgspec.json.encode(draw(st.sampled_from(triples))[2])


stored_events = segment_events() | perturbed_events() | koala_events()


def _reference(body: bytes) -> wire.Entry:
    return wire.entry_of(msgspec.json.decode(body), carry_message_id=True)


@settings(max_examples=500, deadline=None)
@given(stored_events)
def test_the_fast_path_gives_the_reference_entry(body: bytes) -> None:
    fast = entry_of_stored(body)
    if fast is None:
        return  # the reference path decides
    level, head, list_name, entry = _reference(body)  # never refused where the fast path took it
    assert fast[:3] == (level, head, list_name)
    assert msgspec.json.encode(fast[3]) == msgspec.json.encode(entry)


def test_the_fast_path_takes_plain_events() -> None:
    """It is taken for what most deliveries carry (not vacuously ``None``), and not for an
    event that came in as Koala."""
    plain = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "user-1@bench.example",
        "messageId": "r-1",
        "properties": {"price": 129.5},
        "context": {"library": {"name": "bench"}},
        "timestamp": "2026-01-01T12:00:00.000Z",
    }
    for kind in ("track", "page", "screen", "identify"):
        assert entry_of_stored(msgspec.json.encode({**plain, "type": kind})) is not None
    assert entry_of_stored(msgspec.json.encode({**plain, "context": {"koala": {}}})) is None


DESTINATION = Destination(name="k", kind="koala", url="http://127.0.0.1:1/", key="pk/1")


def _reference_requests(events: list[StoredEvent]) -> list[tuple[str, bytes, list[int]] | str]:
    """What the kind sent before the fast path: every entry by ``entry_of``."""
    out: list[tuple[str, bytes, list[int]] | str] = []
    entries: list[tuple[StoredEvent, wire.Entry]] = []
    for event in events:
        try:
            entries.append((event, _reference(event.body)))
        except ValueError as why:
            out.append(str(why))
    for request, tagged in wire.group(entries, by_person=True):
        url = f"http://127.0.0.1:1/web/projects/pk%2F1{request.path}"
        out.append((url, msgspec.json.encode(request.body), [e.seq for e in tagged]))
    return out


def _sent(events: list[StoredEvent]) -> list[tuple[str, bytes, list[int]] | str]:
    sent: list[tuple[str, bytes, list[int]] | str] = []
    for outgoing in Koala().requests(DESTINATION, events):
        if isinstance(outgoing, Skipped):
            sent.append(outgoing.reason)
        else:
            assert isinstance(outgoing, OutgoingRequest)  # no request here is over 500 KB
            sent.append((outgoing.url, outgoing.body, [e.seq for e in outgoing.events]))
    return sent


def _outcome(
    make: Callable[[list[StoredEvent]], list[tuple[str, bytes, list[int]] | str]], events: list[StoredEvent]
) -> object:
    """The requests made, or the error the batch failed with (an event no canonical event is:
    without a messageId, say, on which the reference fails too)."""
    try:
        return make(events)
    except Exception as error:  # the same failure is what is compared
        return type(error)


@settings(max_examples=200, deadline=None)
@given(st.lists(stored_events, max_size=20))
def test_the_kinds_requests_are_the_references_byte_for_byte(bodies: list[bytes]) -> None:
    events = [StoredEvent(seq, 1, "track", body) for seq, body in enumerate(bodies, 1)]
    assert _outcome(_sent, events) == _outcome(_reference_requests, events)

"""The short path for plain events gives the facts of the reference path, for any event.

A differential property test, as tests/wire has for the typed Segment path: generated
events, plain and not, in every format's shape and with junk ids, read both ways.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.profiles.test_replay import event_lists
from trackyard.profiles.facts import FactReader, decode_event
from trackyard.profiles.settings import ProfileSettings

ids = (
    st.none()
    | st.sampled_from(["u1", "A1", " a1 ", "", "null", "Anonymous", "---", "x@y.com"])
    | st.integers()
)
names = st.none() | st.sampled_from(["Viewed", ""]) | st.integers()
times = st.none() | st.sampled_from(["2026-01-01T12:00:00.000Z", "2026-01-01T12:00:00+02:00", "soon"])
contexts = st.fixed_dictionaries(
    {},
    optional={
        "groupId": st.none() | st.sampled_from(["g1", ""]),
        "externalIds": st.none()
        | st.just([{"id": "r1", "type": "registered", "collection": "users", "encoding": "none"}])
        | st.just([{"id": "acc1", "type": "vitally_account_id", "collection": "accounts"}]),
        "vitally": st.just({"type": "user"}),
        "page": st.just({"url": "https://shop.example/"}),
    },
)
calls = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "other"])},
    optional={
        "userId": ids,
        "anonymousId": ids,
        "event": names,
        "name": names,
        "groupId": ids,
        "previousId": ids,
        "traits": st.just({"email": "E@x.com", "plan": "pro"}),
        "timestamp": times,
        "receivedAt": times,
        "context": contexts,
        "source": st.sampled_from([{"format": f} for f in ("segment", "koala", "vitally", "bloomreach")]),
    },
)
rules = st.builds(
    ProfileSettings,
    priority=st.sampled_from([("user_id", "anonymous_id"), ("anonymous_id", "user_id"), ()]),
    blocked_values=st.just(frozenset({"null", "undefined", "anonymous"})),
    require_alphanumeric=st.booleans(),
    lowercase_id_types=st.sampled_from(
        [frozenset({"email"}), frozenset({"email", "user_id", "anonymous_id"})]
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    event=calls | event_lists.filter(bool).map(lambda events: events[0]), seq=st.integers(1, 10), rules=rules
)
def test_the_short_path_reads_what_the_reference_path_reads(
    event: dict[str, Any], seq: int, rules: ProfileSettings
) -> None:
    view = decode_event(msgspec.json.encode(event))
    assert view is not None
    reader = FactReader(rules)
    assert reader.read(seq, view) == reader.read_reference(seq, view)

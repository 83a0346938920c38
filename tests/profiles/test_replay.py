"""Replaying the log from scratch gives identical profiles: a property over generated event sequences.

Events come from a small pool of ids so that links, merges, unique-id conflicts, soft-id
moves, junk values, memberships and unlinks all happen often, in every format's shape,
with out-of-order times.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.profiles.conftest import at, build, stored
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.facts import split_key
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import ProfileState
from trackyard.storage.sqlite.profiles import SQLiteProfiles

user_ids = st.sampled_from(["u1", "u2", "u3", "null"])
anon_ids = st.sampled_from(["a1", "a2", "a3", "", "undefined"])
emails = st.sampled_from(["e1@x.com", "E1@X.com", "e2@x.com"])
registered = st.sampled_from(["r1", "r2"])
accounts = st.sampled_from(["acc1", "acc2"])
times = st.integers(0, 40).map(at)
traits = st.dictionaries(
    st.sampled_from(["plan", "name", "seats"]), st.integers(0, 3) | st.none(), max_size=2
)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _ext(id_type: str, collection: str = "users") -> st.SearchStrategy[dict[str, Any]]:
    values = {"registered": registered, "cookie": anon_ids, "vitally_account_id": accounts}[id_type]
    return values.map(lambda v: {"id": v, "type": id_type, "collection": collection, "encoding": "none"})


segment_calls = st.one_of(
    st.builds(
        lambda ids, t, tr, email: {"type": "identify", **ids, "timestamp": t, "traits": {**tr, **email}},
        st.fixed_dictionaries({"userId": user_ids, "anonymousId": anon_ids})
        | _optional(userId=user_ids, anonymousId=anon_ids),
        times,
        traits,
        _optional(email=emails),
    ),
    st.builds(
        lambda ids, t: {"type": "track", "event": "E", **ids, "timestamp": t},
        _optional(userId=user_ids, anonymousId=anon_ids),
        times,
    ),
    st.builds(lambda a, t: {"type": "page", "anonymousId": a, "timestamp": t}, anon_ids, times),
    st.builds(lambda p, u: {"type": "alias", "previousId": p, "userId": u}, anon_ids | user_ids, user_ids),
    st.builds(
        lambda u, g, tr, t: {"type": "group", "userId": u, "groupId": g, "traits": tr, "timestamp": t},
        user_ids,
        st.sampled_from(["g1", "g2"]),
        traits,
        times,
    ),
)
bloomreach_updates = st.builds(
    lambda ids, tr, update, t: {
        "type": "identify",
        "traits": tr,
        "timestamp": t,
        "source": {"format": "bloomreach"},
        "context": {
            "externalIds": ids,
            "bloomreach": {"name": "customers", "data": {"update_timestamp": update}},
        },
    },
    st.lists(_ext("registered") | _ext("cookie"), min_size=1, max_size=2),
    traits,
    st.integers(1_700_000_000, 1_700_000_040),
    times,
)
vitally_messages = st.builds(
    lambda u, account, unlink, t: {
        "type": "identify",
        "userId": u,
        "timestamp": t,
        "source": {"format": "vitally"},
        **(
            {
                "traits": {"company": {"id": account["id"], "remove": True}},
                "context": {"vitally": {"type": "unlink"}},
            }
            if unlink
            else {"traits": {}, "context": {"vitally": {"type": "user"}, "externalIds": [account]}}
        ),
    },
    user_ids,
    _ext("vitally_account_id", "accounts"),
    st.booleans(),
    times,
)
koala_identifies = st.builds(
    lambda profile_id, email, tr: {
        "type": "identify",
        "anonymousId": profile_id,
        "userId": email,
        "traits": tr,
        "source": {"format": "koala"},
        "context": {
            "externalIds": [{"id": email, "type": "email", "collection": "users", "encoding": "none"}]
        },
    },
    anon_ids,
    emails,
    traits,
)
event_lists = st.lists(segment_calls | bloomreach_updates | vitally_messages | koala_identifies, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists, cuts=st.lists(st.integers(1, 30), max_size=6))
def test_a_rebuild_from_scratch_gives_identical_profiles(
    events: list[dict[str, Any]], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # As the events arrived: transactions of arbitrary sizes, each batch sometimes applied twice
        # (as after a crash between reading and committing, or two consumers racing).
        incremental = SQLiteProfiles(root / "live")
        builder = ProfileBuilder(incremental, ProfileSettings())
        log = stored(events)
        bounds = sorted({0, len(log), *(c for c in cuts if c < len(log))})
        for start, end in zip(bounds, bounds[1:], strict=False):
            builder.apply(log[start:end])
            builder.apply(log[max(start - 1, 0) : end])
        rebuilt = build(root / "rebuilt", events)
        assert incremental.snapshot() == rebuilt.snapshot()
        incremental.reset()
        builder.apply(log)
        assert incremental.snapshot() == rebuilt.snapshot()
        _check_invariants(rebuilt, len(log))


def _check_invariants(profiles: SQLiteProfiles, count: int) -> None:
    snapshot = profiles.snapshot()
    merged = {row[0] for row in snapshot["profiles"] if row[2] is not None}
    unique = set(ProfileSettings().unique_id_types)
    values: dict[tuple[int, str], set[str]] = defaultdict(set)
    for key, pid, *_ in snapshot["identities"]:
        assert pid not in merged, "every id belongs to a current profile"
        _, id_type, value = split_key(key)
        if id_type in unique:
            values[pid, id_type].add(value)
    assert all(len(v) == 1 for v in values.values()), "at most one value of a unique id type per profile"
    kinds = {row[0]: row[1] for row in snapshot["profiles"]}
    people_of_event: dict[int, int] = defaultdict(int)
    for pid, seq in snapshot["profile_events"]:
        assert pid not in merged
        people_of_event[seq] += kinds[pid] == "p"
    assert all(n <= 1 for n in people_of_event.values()), "an event is about one person at most"
    assert dict(snapshot["meta"]).get("cursor", 0) == count


class _RewritingProfiles(SQLiteProfiles):
    """The reference path: every profile a batch touches is written whole, as it was before
    rows were compared with what was loaded (a profile without ``stored`` is always written)."""

    def load(self, ids: Collection[int]) -> dict[int, ProfileState]:
        loaded = super().load(ids)
        for state in loaded.values():
            state.stored = None
        return loaded


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists, batch=st.integers(1, 5))
def test_writing_only_changed_profile_columns_gives_the_profiles_of_whole_rewrites(
    events: list[dict[str, Any]], batch: int
) -> None:
    """Small batches, so that most profiles are loaded by a later batch: unchanged, counters only, or more."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = build(Path(tmp) / "reference", events, batch=batch, store=_RewritingProfiles)
        partial = build(Path(tmp) / "partial", events, batch=batch)
        assert partial.snapshot() == reference.snapshot()

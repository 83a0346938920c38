"""Replaying the log from scratch gives identical profiles: a property over generated event sequences.

Events come from a small pool of ids so that links, merges, unique-id conflicts, soft-id
moves, junk values, memberships and unlinks all happen often, in every format's shape,
with out-of-order times.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.profiles.conftest import at, build, stored
from trackyard.profiles.builder import ProfileBuilder, _Batch
from trackyard.profiles.facts import split_key
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import Changes, ProfileState
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
        reference = build(Path(tmp) / "reference", events, batch=batch, store=_RewritingProfiles, recent=0)
        partial = build(Path(tmp) / "partial", events, batch=batch)
        assert partial.snapshot() == reference.snapshot()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists, batch=st.integers(1, 5), limit=st.sampled_from([1, 2, 3, 10_000]))
def test_profiles_kept_across_batches_give_the_profiles_of_loading_every_batch(
    events: list[dict[str, Any]], batch: int, limit: int
) -> None:
    """Small batches, so that most profiles come from an earlier batch's kept states; small
    limits, so that profiles are dropped while ids naming them are kept."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = build(Path(tmp) / "reference", events, batch=batch, recent=0)
        kept = build(Path(tmp) / "kept", events, batch=batch, recent=limit)
        assert kept.snapshot() == reference.snapshot()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists, turns=st.lists(st.booleans(), min_size=1, max_size=12))
def test_builders_taking_turns_on_one_store_give_the_profiles_of_one(
    events: list[dict[str, Any]], turns: list[bool]
) -> None:
    """As when the lease passes from one consumer to another and back: each builder must see
    that the store moved on without it and load again what it kept."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = build(Path(tmp) / "reference", events, batch=3, recent=0)
        first, second = SQLiteProfiles(Path(tmp) / "shared"), SQLiteProfiles(Path(tmp) / "shared")
        builders = (ProfileBuilder(first, ProfileSettings()), ProfileBuilder(second, ProfileSettings()))
        log = stored(events)
        for n, start in enumerate(range(0, len(log), 3)):
            builders[turns[n % len(turns)]].apply(log[start : start + 3])
        assert first.snapshot() == reference.snapshot()


class _FailingCommit(SQLiteProfiles):
    """Fails the commits it is told to, after the batch has changed its profiles."""

    failures = 0

    def commit(self, changes: Changes) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().commit(changes)


def test_a_failed_batch_forgets_the_profiles_it_changed(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u1", "traits": {"plan": 1}},
        {"type": "track", "event": "E", "userId": "u1"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": 2}},
    ]
    reference = build(tmp_path / "reference", events, batch=1, recent=0)
    profiles = _FailingCommit(tmp_path / "failing")
    builder = ProfileBuilder(profiles, ProfileSettings())
    log = stored(events)
    builder.apply(log[:1])
    for batch in (log[1:2], log[2:]):
        profiles.failures = 1
        with pytest.raises(sqlite3.OperationalError):
            builder.apply(batch)
        builder.apply(batch)  # the consumer's retry
    assert profiles.snapshot() == reference.snapshot()
    assert profiles.profile(1) == reference.profile(1)
    assert profiles.profile(1).event_count == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("limit", [1, 10_000])
def test_an_id_a_merge_moved_is_looked_up_again(tmp_path: Path, limit: int) -> None:
    """``a2`` is kept as the second profile's, which a later batch merges into the first
    without naming ``a2``; an event of ``a2`` after it is about the first profile."""
    events: list[dict[str, Any]] = [
        {"type": "page", "anonymousId": "a1"},
        {"type": "identify", "anonymousId": "a2", "traits": {"email": "e2@x.com"}},
        {"type": "identify", "userId": "u1", "anonymousId": "a1"},
        {"type": "identify", "userId": "u1", "traits": {"email": "e2@x.com"}},
        {"type": "page", "anonymousId": "a2"},
    ]
    reference = build(tmp_path / "reference", events, batch=5, recent=0)
    kept = build(tmp_path / "kept", events, batch=1, recent=limit)
    assert kept.snapshot() == reference.snapshot()
    assert kept.resolve_key("p\x1fanonymous_id\x1fa2") == 1
    assert kept.event_seqs(1, None, 10) == [5, 4, 3, 2, 1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists, batch=st.integers(1, 30))
def test_the_short_paths_give_the_profiles_of_the_full_rules(
    events: list[dict[str, Any]], batch: int
) -> None:
    """``_Batch._plain`` and the unmerged batch's ``changes`` against ``_event`` and the
    settling of every id, over the same generated logs (a new builder reads the switch)."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        short = build(Path(tmp) / "short", events, batch=batch)
        patch.setattr(_Batch, "short_paths", False)
        reference = build(Path(tmp) / "reference", events, batch=batch)
        assert short.snapshot() == reference.snapshot()

"""ProfileStore basics: begin/commit/progress, rollback, reset, the rebuild request.

The builder's behaviour (identity graph, merges, traits) is tested in tests/profiles; here
only what every profile store must keep: a batch commits whole with its progress, or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.profiles.conftest import build, stored
from tests.storage.conformance.conftest import reopened
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import Changes, Identity, ProfileState, Progress, TraitWrite
from trackyard.storage.factory import Backends


def _changes(cursor: int) -> Changes:
    person = ProfileState(
        id=1,
        kind="p",
        created_seq=1,
        unique={"user_id": "u-1"},
        traits={"plan": ["pro", 1_000, 1]},
        first_seen=1_000,
        last_seen=2_000,
        event_count=2,
    )
    return Changes(
        progress=Progress(cursor=cursor, processed=cursor, next_id=2),
        identities=[Identity("p:user_id:u-1", 1, 1_000, 1)],
        profiles=[person],
        events=[(1, 1), (1, 2)],
        history=[TraitWrite(1, "plan", 1_000, 1, b'"pro"', True)],
    )


def test_a_new_store_starts_at_the_beginning(backends: Backends) -> None:
    profiles = backends.profiles()
    assert profiles.progress() == Progress()
    assert profiles.counts()["people"] == 0
    assert not profiles.rebuild_requested()


def test_a_committed_batch_is_read_back_with_its_progress(backends: Backends) -> None:
    profiles = backends.profiles()
    assert profiles.begin() == Progress()
    profiles.commit(_changes(cursor=2))
    assert profiles.progress() == Progress(cursor=2, processed=2, next_id=2)
    assert profiles.resolve_key("p:user_id:u-1") == 1
    stored = profiles.profile(1)
    assert stored is not None
    assert (stored.kind, stored.unique, stored.traits, stored.event_count) == (
        "p",
        {"user_id": "u-1"},
        {"plan": ["pro", 1_000, 1]},
        2,
    )
    assert profiles.event_seqs(1, None, 10) == [2, 1]
    assert [w.name for w in profiles.trait_history(1)] == ["plan"]
    assert profiles.counts()["people"] == 1
    # The writer sees it too, in its next transaction.
    assert profiles.begin() == Progress(cursor=2, processed=2, next_id=2)
    assert profiles.owners(["p:user_id:u-1", "p:user_id:u-2"]) == {"p:user_id:u-1": 1}
    assert profiles.load([1, 7]).keys() == {1}
    profiles.rollback()


def test_a_rolled_back_batch_leaves_nothing(backends: Backends) -> None:
    profiles = backends.profiles()
    profiles.begin()
    profiles.join(1, 2, 1_000, 1)
    profiles.rollback()
    assert profiles.progress() == Progress()
    assert profiles.memberships(1) == []
    # The store is usable after a rollback.
    profiles.begin()
    profiles.commit(_changes(cursor=1))
    assert profiles.progress().cursor == 1


def test_progress_and_profiles_survive_a_reopen(backends: Backends) -> None:
    profiles = backends.profiles()
    profiles.begin()
    profiles.commit(_changes(cursor=5))
    snapshot = profiles.snapshot()
    with reopened(backends, writer=False) as again:
        assert again.profiles().progress().cursor == 5
        assert again.profiles().snapshot() == snapshot


def test_reset_forgets_everything_and_a_rebuild_request_is_seen(backends: Backends) -> None:
    profiles = backends.profiles()
    profiles.begin()
    profiles.commit(_changes(cursor=3))
    profiles.request_rebuild()
    assert profiles.rebuild_requested()
    profiles.reset()
    assert profiles.progress() == Progress()
    assert profiles.resolve_key("p:user_id:u-1") is None
    assert profiles.counts()["people"] == 0
    assert not profiles.rebuild_requested()


def test_each_row_shape_reads_back_as_it_was_written(backends: Backends) -> None:
    """A new profile with nothing but counters, a whole row and a counters-only update
    (three statements, ``_profile_queries.profile_rows``) all read back as the state written."""
    profiles = backends.profiles()
    visitor = ProfileState(id=2, kind="p", created_seq=3, first_seen=1_500, last_seen=1_500, event_count=1)
    user = ProfileState(id=3, kind="p", created_seq=4, unique={"user_id": "u-3"}, event_count=0)
    changes = _changes(cursor=3)
    changes.profiles += [visitor, user]
    profiles.begin()
    profiles.commit(changes)
    rows = {row[0]: row for row in profiles.snapshot()["profiles"]}
    assert rows[2] == (2, "p", None, 3, 1_500, 1_500, 1, b"{}", b"{}")
    assert rows[3] == (3, "p", None, 4, None, None, 0, b'{"user_id":"u-3"}', b"{}")
    assert rows[1][7:] == (b'{"user_id":"u-1"}', b'{"plan":["pro",1000,1]}')
    # A batch that loads them and counts an event of each.
    profiles.begin()
    loaded = profiles.load([1, 2])
    for state in loaded.values():
        state.last_seen, state.event_count = 3_000, state.event_count + 1
    profiles.commit(Changes(Progress(cursor=4, processed=4, next_id=3), profiles=list(loaded.values())))
    assert profiles.profiles([1, 2]) == loaded
    assert loaded[2] == ProfileState(
        id=2, kind="p", created_seq=3, first_seen=1_500, last_seen=3_000, event_count=2
    )


def test_the_builder_in_small_batches_gives_the_profiles_it_gives_on_sqlite(
    backends: Backends, tmp_path: Path
) -> None:
    """Profiles kept across batches, new rows, counters-only updates, merges and moves, on
    every backend: the same tables as a single-batch build on SQLite without kept profiles."""
    events: list[dict[str, Any]] = [
        {"type": "page", "anonymousId": "a1"},
        {"type": "identify", "anonymousId": "a2", "traits": {"email": "e2@x.com"}},
        {"type": "track", "event": "E", "userId": "u1"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": "pro"}},
        {"type": "track", "event": "E", "userId": "u1"},
        {"type": "identify", "userId": "u1", "traits": {"email": "e2@x.com"}},
        {"type": "identify", "userId": "u2", "anonymousId": "a1"},
        {"type": "page", "anonymousId": "a2"},
        {"type": "group", "userId": "u2", "groupId": "g1", "traits": {"name": "G"}},
        {"type": "track", "event": "E", "userId": "u1"},
        {"type": "page", "anonymousId": "a9"},  # a new row that no later batch rewrites
    ]
    reference = build(tmp_path / "reference", events, recent=0)
    builder = ProfileBuilder(backends.profiles(), ProfileSettings())
    log = stored(events)
    for start in range(0, len(log), 2):
        builder.apply(log[start : start + 2])
    assert backends.profiles().snapshot() == reference.snapshot()

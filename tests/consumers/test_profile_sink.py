"""Profiles on the framework: the sink keeps its cursor in the profile store's transaction."""

from __future__ import annotations

import msgspec

from tests.consumers.conftest import append
from tests.profiles.conftest import at
from trackyard.consumers.runner import Runner
from trackyard.profiles.consumer import ProfileSink, open_runner, policy
from trackyard.profiles.settings import ProfileSettings
from trackyard.storage.factory import Backends


def _identify(i: int) -> bytes:
    body = {"type": "identify", "userId": f"u{i % 3}", "timestamp": at(i), "source": {"format": "segment"}}
    return msgspec.json.encode(body)


def test_the_profile_runner_keeps_its_cursor_with_the_profiles_not_in_the_cursor_store(
    backends: Backends,
) -> None:
    append(backends, [_identify(i) for i in range(30)])
    runner = open_runner(backends)
    assert runner.lag() == 30
    assert runner.catch_up() == 30
    progress = backends.profiles().progress()
    assert progress.cursor == progress.processed == 30 and runner.lag() == 0
    assert backends.profiles().counts()["people"] == 3
    assert backends.cursors().get("profiles") == 0  # the profile store holds it


def test_advancing_past_a_dead_letter_moves_the_profile_cursor_forward_only(backends: Backends) -> None:
    sink = ProfileSink(backends.profiles(), ProfileSettings())
    sink.advance(5)
    assert sink.position() == 5 and backends.profiles().progress().processed == 1
    sink.advance(3)  # behind the cursor: nothing happens
    assert sink.position() == 5 and backends.profiles().progress().processed == 1


def test_a_requested_rebuild_starts_again_from_the_beginning(backends: Backends) -> None:
    append(backends, [_identify(i) for i in range(10)])
    settings = ProfileSettings()
    runner = Runner(
        "profiles",
        backends.log,
        ProfileSink(backends.profiles(), settings),
        None,
        backends.dead_letters(),
        policy(settings),
    )
    runner.catch_up()
    before = backends.profiles().snapshot()
    backends.profiles().request_rebuild()
    assert runner.position() == 10  # a status read does not start the rebuild
    assert runner.catch_up() == 10
    assert not backends.profiles().rebuild_requested()
    assert backends.profiles().snapshot() == before

"""The supervisor with real consumer processes: restart after a kill, one instance per lease,
a graceful stop. The supervisor runs in a thread here; its children are real processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.consumers.conftest import append
from tests.profiles.conftest import at
from trackyard.config import Settings
from trackyard.consumers.runner import Backoff
from trackyard.consumers.supervisor import RestartPolicy, Supervisor
from trackyard.profiles.facts import PERSON, make_key
from trackyard.storage.factory import Backends, open_backends

_FAST = RestartPolicy(restart=Backoff(0.05, 0.2), lease_retry=0.05, stop_timeout=20)


def _identifies(start: int, count: int) -> list[bytes]:
    return [
        msgspec.json.encode(
            {
                "type": "identify",
                "userId": "u",
                "traits": {"n": i},
                "timestamp": at(i),
                "messageId": f"m{i}",
                "source": {"format": "segment"},
            }
        )
        for i in range(start, start + count)
    ]


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(Settings(data_dir=tmp_path / "data"), writer=True)
    yield opened
    opened.close()


def _caught_up(backends: Backends) -> bool:
    return backends.profiles().progress().cursor == backends.log.head_seq()


def test_a_killed_consumer_is_restarted_and_resumes_without_applying_anything_twice(
    backends: Backends,
) -> None:
    supervisor = Supervisor(backends.settings, ["profiles"], policy=_FAST)
    supervisor.start()
    try:
        append(backends, _identifies(0, 500))
        _until(lambda: "profiles" in supervisor.pids(), "the consumer runs")
        first = supervisor.pids()["profiles"]
        append(backends, _identifies(500, 1500))
        os.kill(first, signal.SIGKILL)  # likely in the middle of a batch
        _until(lambda: supervisor.pids().get("profiles", first) != first, "the consumer is restarted")
        assert supervisor.exits()["profiles"] == [-signal.SIGKILL]
        _until(lambda: _caught_up(backends), "the restarted consumer caught up")
    finally:
        supervisor.stop()
    progress = backends.profiles().progress()
    assert progress.cursor == progress.processed == 2000
    pid = backends.profiles().resolve_key(make_key(PERSON, "user_id", "u"))
    assert pid is not None
    profile = backends.profiles().profile(pid)
    assert profile is not None and profile.event_count == 2000  # nothing applied twice
    assert profile.traits["n"][0] == 1999


def test_one_instance_per_consumer_and_the_waiting_supervisor_takes_over(backends: Backends) -> None:
    first = Supervisor(backends.settings, ["profiles"], policy=_FAST)
    second = Supervisor(backends.settings, ["profiles"], policy=_FAST)
    first.start()
    try:
        append(backends, _identifies(0, 50))
        _until(lambda: _caught_up(backends), "the first supervisor's consumer builds")
        second.start()
        _until(lambda: second.waiting() == ["profiles"], "the second supervisor waits for the lease")
        assert second.pids() == {} and backends.leases().held("profiles")
        first.stop()
        assert first.exits()["profiles"] == [0]  # a graceful stop
        _until(lambda: "profiles" in second.pids(), "the second supervisor takes over")
        append(backends, _identifies(50, 50))
        _until(lambda: _caught_up(backends), "the new instance builds")
    finally:
        first.stop()
        second.stop()
    assert not backends.leases().held("profiles")


def test_a_graceful_stop_commits_and_exits_zero_and_releases_the_lease(backends: Backends) -> None:
    append(backends, _identifies(0, 3000))
    supervisor = Supervisor(backends.settings, policy=_FAST)
    supervisor.start()
    _until(lambda: backends.profiles().progress().cursor > 0, "the consumer has committed a batch")
    supervisor.stop()
    # Every enabled consumer: the profiles, the warehouse loader (on by default), retention,
    # the metrics reader.
    assert supervisor.exits() == {"profiles": [0], "warehouse": [0], "retention": [0], "metrics": [0]}
    assert supervisor.pids() == {} and not backends.leases().held("profiles")
    assert not backends.leases().held("warehouse")
    progress = backends.profiles().progress()
    assert progress.cursor == progress.processed > 0  # whatever it did is committed, whole batches

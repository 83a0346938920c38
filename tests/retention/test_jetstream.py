"""Retention on a JetStream log, against a real nats-server: the same policy purges whole
ranges of the stream below a seq, never past what an enabled consumer has not read (unless
told), and ``trackyard store status|prune --log nats://`` and the retention consumer work."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.conftest import cli
from tests.retention.conftest import DAY_MS, everything, profiles_read, run_retention_consumer, write
from tests.storage.nats_servers import NatsServers, nats_servers
from trackyard.config import Settings
from trackyard.consumers.registry import wanted
from trackyard.retention.policy import Policy, run_pass
from trackyard.storage.base import LogMaintenance
from trackyard.storage.factory import Backends, maintenance_available, open_backends, open_maintenance

_streams = itertools.count(1)
#: Where a run of the policy is, for an age limit of 30 days: 31 days on.
_LATER_MS = 31 * DAY_MS


@pytest.fixture(scope="module")
def jetstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServers]:
    with nats_servers(tmp_path_factory.mktemp("nats")) as servers:
        yield servers


@pytest.fixture
def settings(tmp_path: Path, jetstream: NatsServers) -> Settings:
    """The log on a stream of its own (conftest's ``backends`` opens these settings)."""
    return Settings(
        data_dir=tmp_path / "data",
        durability="process",
        warehouse_url="off",
        log_url=f"{jetstream.url}?stream=RET{next(_streams)}",
    )


@pytest.fixture
def maintenance(backends: Backends) -> Iterator[LogMaintenance]:
    assert maintenance_available(backends.settings)
    opened = open_maintenance(backends.settings)
    try:
        yield opened
    finally:
        opened.close()


def test_a_lagging_consumer_holds_the_purge_back_until_it_has_read(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 25_000)
    before = everything(backends)
    later = int(time.time() * 1000) + _LATER_MS
    policy = Policy(max_age_seconds=30 * 86_400)

    held = run_pass(backends, maintenance, policy, now_ms=later)
    assert (held.dropped_events, held.compacted_events) == (0, 0)
    assert [(hold.consumer, hold.position) for hold in held.held_by] == [("profiles", 0)]
    assert everything(backends) == before

    # Part way (12,000 read): the first range of 10,000 goes, the next one is kept for it.
    assert profiles_read(backends, 12) == 12_000
    part_way = run_pass(backends, maintenance, policy, now_ms=later)
    assert part_way.dropped_events == 10_000
    assert [hold.consumer for hold in part_way.held_by] == ["profiles"]
    assert everything(backends) == before[10_000:]

    assert profiles_read(backends, None) == 25_000
    done = run_pass(backends, maintenance, policy, now_ms=later)
    assert done.held_by == []
    # Everything but the newest event (kept, as on SQLite): its seq stays the head.
    assert done.dropped_events == 14_999
    assert everything(backends) == before[-1:]
    extent = maintenance.extent()
    assert (extent.events, extent.oldest_seq, extent.head_seq) == (1, 25_000, 25_000)
    assert backends.log.head_seq() == 25_000
    # Not yet 30 days on: nothing is due.
    write(backends, 100, start=25_000)
    assert run_pass(backends, maintenance, policy).dropped_events == 0


def test_size_retention_keeps_the_newest_events_and_the_dedup_window(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 30_000)
    full = maintenance.extent().stored_bytes
    limit = full // 2
    report = run_pass(backends, maintenance, Policy(max_bytes=limit, ignore_consumers=True))
    extent = maintenance.extent()
    assert report.dropped_events == 20_000  # two ranges of 10,000: under the limit after them
    assert extent.stored_bytes <= limit < full
    assert [event.seq for event in everything(backends)] == list(range(20_001, 30_001))
    # A retry of a purged event is still a duplicate (trackyard's dedup index, in the state).
    write(backends, 100)
    assert backends.log.head_seq() == 30_000


def test_store_status_and_prune_with_log_nats(backends: Backends, settings: Settings) -> None:
    write(backends, 12_000)
    args = ("--data-dir", str(settings.data_dir), "--log", str(settings.log_url))
    status = msgspec.json.decode(cli("store", "status", *args, "--json"))
    assert (status["events"], status["oldest_seq"], status["head_seq"]) == (12_000, 1, 12_000)
    assert status["disk_bytes"]["log"] == status["log_bytes"] > 0
    assert status["consumers"]["profiles"] == 0
    out = cli("store", "prune", *args, "--size", "1KB")
    assert "dropped 0 events" in out and "held back by profiles (at seq 0)" in out
    out = cli("store", "prune", *args, "--size", "1KB", "--ignore-consumers")
    assert "dropped 11,999 events" in out and "1 events kept" in out
    status = msgspec.json.decode(cli("store", "status", *args, "--json"))
    assert (status["events"], status["oldest_seq"], status["head_seq"]) == (1, 12_000, 12_000)


def test_the_retention_consumer_runs_on_a_jetstream_log(settings: Settings, backends: Backends) -> None:
    write(backends, 15_000)
    settings = dataclasses.replace(settings, retention_bytes=1, retention_ignore_consumers=True)
    assert "retention" in [spec.name for spec in wanted((), settings)]
    opened = open_backends(settings)
    try:
        run_retention_consumer(
            opened,
            lambda: len(everything(backends)) <= 1,
            "the retention consumer did not purge the stream",
        )
    finally:
        opened.close()
    assert [event.seq for event in everything(backends)] == [15_000]

"""Retention on a PostgreSQL log, against the machine's real server: the same policy drops
whole partitions of ``events`` (``DROP TABLE``), never past what an enabled consumer has
not read (unless told); the dedup window outlives them; an unpartitioned database of
schema version 1 becomes partitioned with every event kept; ``trackyard store status|prune``
and the retention consumer work on it; PostgreSQL state prunes its rejects."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from tests.conftest import cli
from tests.pg_databases import fresh_database
from tests.retention.conftest import DAY_MS, everything, profiles_read, run_retention_consumer, write
from tests.retention.test_sigkill import append_recorded, check_kept, maintaining_child
from tests.storage.nats_servers import nats_servers
from trackyard.config import Settings
from trackyard.consumers.registry import wanted
from trackyard.errors import StoreUnavailable
from trackyard.retention.policy import Policy, retention_status, run_pass
from trackyard.storage.base import EventRecord, LogMaintenance, RejectRecord
from trackyard.storage.factory import Backends, maintenance_available, open_backends, open_maintenance
from trackyard.storage.postgres._db import SCHEMA_VERSION

#: Seqs per partition here: a few partitions from a few thousand events.
_WIDTH = 5_000
#: Where a run of the policy is, for an age limit of 30 days: 31 days on.
_LATER_MS = 31 * DAY_MS


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """The state and the log in a database of their own (conftest's ``backends`` opens these)."""
    with fresh_database() as dsn:
        yield Settings(
            data_dir=tmp_path / "data",
            durability="process",
            warehouse_url="off",
            state_url=dsn,
            log_partition_events=_WIDTH,
        )


@pytest.fixture
def maintenance(backends: Backends) -> Iterator[LogMaintenance]:
    assert maintenance_available(backends.settings)
    opened = open_maintenance(backends.settings)
    try:
        yield opened
    finally:
        opened.close()


def _partitions(dsn: str) -> list[tuple[str, int, int]]:
    """(name, min seq, max seq) of each partition of ``events`` that has rows, oldest first."""
    with psycopg.connect(dsn) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'events'::regclass"
            )
        ]
        found = []
        for name in names:
            low, high = conn.execute(f"SELECT min(seq), max(seq) FROM {name}".encode()).fetchone() or (
                None,
                None,
            )
            if low is not None:
                found.append((name, int(low), int(high)))
    return sorted(found, key=lambda part: part[1])


def _again(backends: Backends, ids: range) -> tuple[int, int]:
    now = int(time.time() * 1000)
    events = [EventRecord(1, f"m-{i}", "track", now, b'{"again":%d}' % i) for i in ids]
    result = asyncio.run(backends.log.append(events, []))
    return result.stored, result.duplicates


def test_the_writer_keeps_a_partition_ahead(backends: Backends, settings: Settings) -> None:
    write(backends, 12_000)
    assert settings.state_url
    assert [(low, high) for _, low, high in _partitions(settings.state_url)] == [
        (1, 5_000),
        (5_001, 10_000),
        (10_001, 12_000),
    ]
    with psycopg.connect(settings.state_url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ).fetchone() or (0,)
    assert count == 4  # the one being written, and the next one, empty, already there


def test_a_lagging_consumer_holds_the_drop_back_until_it_has_read(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 12_000)
    before = everything(backends)
    later = int(time.time() * 1000) + _LATER_MS
    policy = Policy(max_age_seconds=30 * 86_400)

    held = run_pass(backends, maintenance, policy, now_ms=later)
    assert held.dropped_events == 0
    assert [(hold.consumer, hold.position) for hold in held.held_by] == [("profiles", 0)]
    status = retention_status(backends, maintenance, policy, now_ms=later)
    assert [hold.consumer for hold in status.held_by] == ["profiles"]
    assert everything(backends) == before

    # Part way (7,000 read): the first partition goes, the second is kept for it.
    assert profiles_read(backends, 7) == 7_000
    part_way = run_pass(backends, maintenance, policy, now_ms=later)
    assert (part_way.dropped_parts, part_way.dropped_events) == (1, 5_000)
    assert [hold.consumer for hold in part_way.held_by] == ["profiles"]
    assert everything(backends) == before[5_000:]

    assert profiles_read(backends, None) == 12_000
    done = run_pass(backends, maintenance, policy, now_ms=later)
    assert done.held_by == []
    # Every full partition; the one holding the newest event stays.
    assert done.dropped_events == 5_000
    assert everything(backends) == before[10_000:]
    extent = maintenance.extent()
    assert (extent.events, extent.oldest_seq, extent.head_seq) == (2_000, 10_001, 12_000)
    assert retention_status(backends, maintenance, policy, now_ms=later).held_by == []
    # Not yet 30 days on: nothing is due.
    assert run_pass(backends, maintenance, policy).dropped_events == 0


def test_size_retention_drops_the_oldest_partitions_and_the_dedup_window_holds(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 20_000)
    full = maintenance.extent().stored_bytes
    limit = full * 6 // 10  # four partitions of about a quarter each (and an empty one ahead)
    report = run_pass(backends, maintenance, Policy(max_bytes=limit, ignore_consumers=True))
    assert report.dropped_events == 10_000  # two partitions: under the limit after them
    assert maintenance.extent().stored_bytes <= limit
    assert [event.seq for event in everything(backends)] == list(range(10_001, 20_001))
    # A retry of a dropped event is still a duplicate (dedup_keys is not the log) ...
    assert _again(backends, range(0, 10_000, 7)) == (0, len(range(0, 10_000, 7)))
    backends.close()
    restarted = open_backends(backends.settings, writer=True)
    try:
        # ... across a restart too, and the log goes on from its head.
        assert _again(restarted, range(3, 10_000, 11)) == (0, len(range(3, 10_000, 11)))
        assert _again(restarted, range(20_000, 20_010)) == (10, 0)
        assert restarted.log.head_seq() == 20_010
        # A consumer behind the oldest kept event goes on from there.
        assert profiles_read(restarted, None) == 20_010
    finally:
        restarted.close()


def test_age_retention_keeps_the_newest_partition_of_old_events(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 11_000, received_ms=int(time.time() * 1000) - 40 * DAY_MS)
    report = run_pass(backends, maintenance, Policy(max_age_seconds=30 * 86_400, ignore_consumers=True))
    assert report.dropped_events == 10_000
    kept = everything(backends)
    assert [event.seq for event in kept] == list(range(10_001, 11_001))
    write(backends, 5, start=11_000)
    assert backends.log.head_seq() == 11_005


def test_rejects_are_pruned_by_their_retention(backends: Backends, maintenance: LogMaintenance) -> None:
    now = int(time.time() * 1000)
    old = RejectRecord(1, now - 40 * DAY_MS, "/v1/track", "invalid", "old", None, b"{}")
    new = RejectRecord(1, now, "/v1/track", "invalid", "new", None, b"{}")
    asyncio.run(backends.log.append([], [old] * 7_000 + [new]))
    report = run_pass(backends, maintenance, Policy(rejects_seconds=30 * 86_400))
    assert report.rejects == 7_000
    assert [r.message for r in backends.rejects.read_rejects()] == ["new"]


def test_store_status_and_prune_on_a_postgresql_log(backends: Backends, settings: Settings) -> None:
    write(backends, 12_000)
    assert settings.state_url
    args = ("--data-dir", str(settings.data_dir), "--state", settings.state_url)
    status = msgspec.json.decode(cli("store", "status", *args, "--json"))
    assert (status["events"], status["oldest_seq"], status["head_seq"]) == (12_000, 1, 12_000)
    assert status["disk_bytes"]["log"] == status["log_bytes"] > 0
    assert status["disk_bytes"]["dedup"] > 0
    assert set(status["disk_bytes"]) >= {"log", "dedup", "rejects", "profiles", "consumers", "warehouse"}
    # Measured: every body's bytes (two full partitions, the one being written estimated from them).
    assert 0.9 < status["json_bytes"] / sum(len(e.body) for e in everything(backends)) < 1.1
    assert status["consumers"]["profiles"] == 0
    out = cli("store", "prune", *args, "--size", "1KB")
    assert "dropped 0 events" in out and "held back by profiles (at seq 0)" in out
    out = cli("store", "prune", *args, "--size", "1KB", "--ignore-consumers")
    assert "dropped 10,000 events" in out and "2,000 events kept" in out
    status = msgspec.json.decode(cli("store", "status", *args, "--json"))
    assert (status["events"], status["oldest_seq"], status["head_seq"]) == (2_000, 10_001, 12_000)


def test_the_retention_consumer_runs_on_a_postgresql_log(settings: Settings, backends: Backends) -> None:
    write(backends, 16_000)
    settings = dataclasses.replace(settings, retention_bytes=1, retention_ignore_consumers=True)
    assert "retention" in [spec.name for spec in wanted((), settings)]
    opened = open_backends(settings)
    try:
        run_retention_consumer(
            opened,
            lambda: len(everything(backends)) <= 1_000,
            "the retention consumer did not drop the partitions",
        )
    finally:
        opened.close()
    assert [event.seq for event in everything(backends)] == list(range(15_001, 16_001))


#: Schema version 1's log, as the released code created it.
_V1_EVENTS = """
CREATE TABLE events (
    seq bigint PRIMARY KEY,
    source_id bigint NOT NULL,
    type text NOT NULL,
    received_at bigint NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX events_source ON events (source_id, seq);
"""


def test_an_unpartitioned_database_is_partitioned_with_every_event_kept(
    backends: Backends, settings: Settings
) -> None:
    write(backends, 7_500)
    before = everything(backends)
    backends.close()
    assert settings.state_url
    # Back to version 1: the same rows in one plain table.
    with psycopg.connect(settings.state_url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE old_events AS SELECT * FROM events")
        conn.execute("DROP TABLE events, log_partition_sizes")
        conn.execute(_V1_EVENTS.encode())
        conn.execute("INSERT INTO events SELECT * FROM old_events ORDER BY seq")
        conn.execute("DROP TABLE old_events")
        conn.execute("UPDATE schema_version SET version = 1")

    again = open_backends(settings, writer=True)
    try:
        assert everything(again) == before
        # The old table is the first partition, whole; appends go on in new ones.
        assert [(low, high) for _, low, high in _partitions(settings.state_url)] == [(1, 7_500)]
        with psycopg.connect(settings.state_url) as conn:
            sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'events_p1'"
            indexes = conn.execute(sql).fetchall()
        assert sorted(indexes) == [("events_p1_pkey",), ("events_p1_source",)]  # its own, not rebuilt
        assert _again(again, range(0, 7_500, 13)) == (0, len(range(0, 7_500, 13)))  # its keys kept
        write(again, 6_000, start=7_500)
        assert [(low, high) for _, low, high in _partitions(settings.state_url)] == [
            (1, 7_500),
            (7_501, 12_500),
            (12_501, 13_500),
        ]
        assert everything(again)[:7_500] == before
        with psycopg.connect(settings.state_url) as conn:
            assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        maintenance = open_maintenance(settings)
        try:
            report = run_pass(again, maintenance, Policy(max_bytes=1, ignore_consumers=True))
        finally:
            maintenance.close()
        assert report.dropped_events == 12_500
        assert [event.seq for event in everything(again)] == list(range(12_501, 13_501))
    finally:
        again.close()


def test_postgresql_state_under_a_jetstream_log_prunes_its_rejects(tmp_path: Path) -> None:
    with fresh_database() as dsn, nats_servers(tmp_path / "nats") as servers:
        settings = Settings(
            data_dir=tmp_path / "data",
            warehouse_url="off",
            state_url=dsn,
            log_url=f"{servers.url}?stream=PGR",
        )
        backends = open_backends(settings, writer=True)
        try:
            now = int(time.time() * 1000)
            old = RejectRecord(1, now - 40 * DAY_MS, "/v1/track", "invalid", "old", None, b"{}")
            new = RejectRecord(1, now, "/v1/track", "invalid", "new", None, b"{}")
            write(backends, 10)
            asyncio.run(backends.log.append([], [old, new]))
            maintenance = open_maintenance(settings)
            try:
                report = run_pass(backends, maintenance, Policy(rejects_seconds=30 * 86_400))
                usage = maintenance.disk_usage()
            finally:
                maintenance.close()
            assert report.rejects == 1
            assert [r.message for r in backends.rejects.read_rejects()] == ["new"]
            assert usage["log"] > 0 and usage["rejects"] > 0 and usage["dedup"] > 0
        finally:
            backends.close()


def test_a_drop_gives_up_on_a_reader_holding_the_log_and_the_next_pass_drops(
    backends: Backends, maintenance: LogMaintenance, settings: Settings
) -> None:
    write(backends, 11_000)
    assert settings.state_url
    policy = Policy(max_bytes=1, ignore_consumers=True)
    with psycopg.connect(settings.state_url) as reader:  # a transaction left open on events
        reader.execute("SELECT seq FROM events LIMIT 1").fetchall()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            run_pass(backends, maintenance, policy)
        assert time.monotonic() - started < 30
        assert len(everything(backends)) == 11_000
    assert run_pass(backends, maintenance, policy).dropped_events == 10_000


def test_sigkill_during_pruning_loses_nothing_kept_and_a_restart_resumes(settings: Settings) -> None:
    settings = dataclasses.replace(settings, log_partition_events=1_000)
    assert settings.state_url
    backends = open_backends(settings, writer=True)
    rng = random.Random(18)
    written: dict[str, bytes] = {}
    now = int(time.time() * 1000)
    try:
        for round in range(6):
            append_recorded(backends, range(round * 6_000, (round + 1) * 6_000), now, written)
            # Drops everything but the head's partition, one DROP TABLE after another.
            child = maintaining_child(settings.data_dir, "loop-size", settings.state_url)
            time.sleep(rng.uniform(0.0, 0.2))  # the kill point, not a wait for anything
            child.send_signal(signal.SIGKILL)
            assert child.wait() == -signal.SIGKILL
            check_kept(backends, written, set())  # dense up to the head, byte for byte
            assert everything(backends)[0].seq <= (round + 1) * 6_000 - 999  # the head's partition kept
        finisher = maintaining_child(settings.data_dir, "once-size", settings.state_url)
        assert finisher.wait(timeout=300) == 0
        assert [event.seq for event in everything(backends)] == list(range(35_001, 36_001))
        check_kept(backends, written, {f"m-{i}" for i in range(35_000, 36_000)})
        retried = [EventRecord(1, f"m-{i}", "track", now, b"{}") for i in range(0, 36_000, 9)]
        assert asyncio.run(backends.log.append(retried, [])).duplicates == len(retried)
    finally:
        backends.close()


def test_a_postgresql_log_beside_sqlite_state(tmp_path: Path) -> None:
    with fresh_database() as dsn:
        settings = Settings(
            data_dir=tmp_path / "data", warehouse_url="off", log_url=dsn, log_partition_events=_WIDTH
        )
        backends = open_backends(settings, writer=True)
        try:
            write(backends, 11_000)
            profiles_read(backends, None)  # its store is SQLite's profiles.db, in the data dir
            maintenance = open_maintenance(settings)
            try:
                report = run_pass(backends, maintenance, Policy(max_bytes=1))
                usage = maintenance.disk_usage()
            finally:
                maintenance.close()
            assert report.dropped_events == 10_000 and report.held_by == []
            assert [event.seq for event in everything(backends)] == list(range(10_001, 11_001))
            assert usage["log"] > 0 and usage["dedup"] > 0 and usage["profiles"] > 0
        finally:
            backends.close()

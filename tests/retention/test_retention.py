"""Retention by age and by size on real files: what is past the limit goes, in whole blocks,
once every enabled consumer has read it; the dedup window holds across it."""

from __future__ import annotations

import asyncio
import time

from tests.retention.conftest import DAY_MS, compact_all, everything, profiles_read, write
from trackyard.consumers.registry import CONSUMERS
from trackyard.retention.policy import Policy, run_pass
from trackyard.storage.base import EventRecord, LogMaintenance, RejectRecord, StoredEvent
from trackyard.storage.factory import Backends, open_backends

THIRTY_DAYS = 30 * 86_400


def _old_then_new(backends: Backends, old: int, new: int) -> None:
    """``old`` events received 40 days ago, then ``new`` received now."""
    write(backends, old, received_ms=int(time.time() * 1000) - 40 * DAY_MS)
    write(backends, new, start=old)


def test_age_retention_drops_old_events_once_the_consumers_have_read_them(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    now = int(time.time() * 1000)
    write(backends, 10_000, received_ms=now - 40 * DAY_MS)
    write(backends, 10_000, start=10_000, received_ms=now - DAY_MS)
    before = everything(backends)
    policy = Policy(max_age_seconds=THIRTY_DAYS)

    held = run_pass(backends, maintenance, policy)
    assert held.dropped_events == 0
    assert [hold.consumer for hold in held.held_by] == ["profiles"]
    assert held.held_by[0].position == 0
    assert everything(backends) == before  # the old events were compacted, not dropped

    assert profiles_read(backends) == 20_000
    report = run_pass(backends, maintenance, policy)
    assert report.held_by == []
    assert report.dropped_events == 10_000
    assert everything(backends) == before[10_000:]
    assert maintenance.extent().oldest_seq == 10_001
    # Nothing more is due: a second pass drops nothing.
    assert run_pass(backends, maintenance, policy).dropped_events == 0


def test_a_consumer_part_way_keeps_what_it_has_not_read(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    _old_then_new(backends, 30_000, 100)
    runner = CONSUMERS["profiles"].open_runner(backends)
    try:
        runner.step()  # one batch of 1,000 events
        position = runner.position()
    finally:
        runner.sink.close()
    report = run_pass(backends, maintenance, Policy(max_age_seconds=THIRTY_DAYS))
    kept = everything(backends)
    assert kept[0].seq <= position + 1  # nothing it has not read is gone
    assert kept[-1].seq == 30_100
    assert [hold.consumer for hold in report.held_by] == ["profiles"]


def test_size_retention_keeps_the_newest_events_within_the_size(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 40_000)
    compact_all(maintenance)
    before = everything(backends)
    limit = maintenance.extent().stored_bytes // 3
    report = run_pass(backends, maintenance, Policy(max_bytes=limit, ignore_consumers=True))
    kept = everything(backends)
    assert report.dropped_events > 0
    assert maintenance.extent().stored_bytes <= limit
    assert kept == before[-len(kept) :]  # a suffix, byte for byte
    assert kept[-1].seq == 40_000


def test_ignoring_consumers_drops_what_they_have_not_read(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    _old_then_new(backends, 8_000, 10)
    report = run_pass(backends, maintenance, Policy(max_age_seconds=THIRTY_DAYS, ignore_consumers=True))
    assert report.dropped_events == 8_000
    assert [e.seq for e in everything(backends)] == list(range(8_001, 8_011))


def _again(backends: Backends, ids: range) -> tuple[int, int]:
    now = int(time.time() * 1000)
    events = [EventRecord(1, f"m-{i}", "track", now, b'{"again":%d}' % i) for i in ids]
    result = asyncio.run(backends.log.append(events, []))
    return result.stored, result.duplicates


def test_the_dedup_window_holds_across_retention_and_a_restart(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 30_000)  # all inside the window, none flushed from memory yet
    report = run_pass(backends, maintenance, Policy(max_bytes=1, ignore_consumers=True))
    assert report.dropped_events >= 29_000
    assert _again(backends, range(0, 30_000, 7)) == (0, len(range(0, 30_000, 7)))
    backends.close()
    restarted = open_backends(backends.settings, writer=True)
    try:
        # The keys of the dropped rows were written to the dedup tables before the rows went.
        assert _again(restarted, range(3, 30_000, 11)) == (0, len(range(3, 30_000, 11)))
        assert _again(restarted, range(30_000, 30_010)) == (10, 0)
    finally:
        restarted.close()


def test_rejects_and_dead_letters_have_their_own_retention(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    now = int(time.time() * 1000)
    old = RejectRecord(1, now - 40 * DAY_MS, "/v1/track", "invalid", "old", None, b"{}")
    new = RejectRecord(1, now, "/v1/track", "invalid", "new", None, b"{}")
    asyncio.run(backends.log.append([], [old, new]))
    backends.dead_letters().add("profiles", StoredEvent(1, 1, "track", b"{}"), "boom", 5)
    report = run_pass(backends, maintenance, Policy(rejects_seconds=THIRTY_DAYS))
    assert report.rejects == 1
    assert [r.message for r in backends.rejects.read_rejects()] == ["new"]
    assert backends.dead_letters().count("profiles") == 1  # kept forever by default
    later = run_pass(backends, maintenance, Policy(dead_letters_seconds=60), now_ms=now + 3_600_000)
    assert later.dead_letters == 1
    assert backends.dead_letters().count("profiles") == 0

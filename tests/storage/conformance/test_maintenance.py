"""``LogMaintenance``: compaction keeps every read the same; dropping the oldest part drops
exactly its events; the dedup window outlives both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage.conformance.conftest import append, event
from trackyard.storage.base import LogMaintenance
from trackyard.storage.factory import Backends, maintenance_available, open_maintenance


@pytest.fixture
def maintenance(backends: Backends) -> Iterator[LogMaintenance]:
    if not maintenance_available(backends.settings):
        pytest.skip("no compaction and retention of trackyard's for this log")
    opened = open_maintenance(backends.settings)
    try:
        yield opened
    finally:
        opened.close()


def _compacts(backends: Backends) -> bool:
    """Whether the log is SQLite's, which compacts; JetStream's and PostgreSQL's keep events as stored."""
    return backends.settings.log_url is None and backends.settings.state_url is None


def _fill(backends: Backends) -> None:
    for batch in range(6):
        kinds = ("track", "identify")
        append(backends, [event(f"b{batch}-{i}", 1 + i % 2, kinds[i % 2]) for i in range(1000)])


def test_compaction_keeps_reads_the_same(backends: Backends, maintenance: LogMaintenance) -> None:
    _fill(backends)
    log = backends.log
    reads = [
        log.read_events(after=0, limit=10_000),
        log.read_events(after=2_500, limit=333),
        log.read_events(after=10, limit=10_000, source_id=2),
        log.read_events(after=10, limit=10_000, type="identify"),
    ]
    moved = 0
    while events := maintenance.compact(force=True):
        moved += events
    extent = maintenance.extent()
    assert moved == extent.compacted_events
    assert (moved > 0) == _compacts(backends)
    assert extent.events == 6_000 and extent.head_seq == log.head_seq() == 6_000
    assert maintenance.checkpoint() >= 0  # what ingest pausing allows: nothing read changes
    assert [
        log.read_events(after=0, limit=10_000),
        log.read_events(after=2_500, limit=333),
        log.read_events(after=10, limit=10_000, source_id=2),
        log.read_events(after=10, limit=10_000, type="identify"),
    ] == reads


def test_dropping_the_oldest_part_drops_exactly_its_events(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    _fill(backends)
    if _compacts(backends):
        assert maintenance.oldest_part() is None  # only compacted blocks are dropped
    while maintenance.compact(force=True):
        pass
    before = backends.log.read_events(limit=10_000)
    part = maintenance.oldest_part()
    assert part is not None and part.first_seq == 1
    maintenance.drop(part)
    after = backends.log.read_events(limit=10_000)
    assert after == before[part.last_seq :]
    assert maintenance.extent().oldest_seq == part.last_seq + 1
    assert backends.log.head_seq() == 6_000
    # The dropped events are still in the dedup window: a retry is stored once.
    again = append(backends, [event(f"b0-{i}", 1 + i % 2) for i in range(100)])
    assert (again.stored, again.duplicates) == (0, 100)

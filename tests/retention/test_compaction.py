"""Compaction on real SQLite files: the same events read back, on far fewer bytes."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

from tests.retention.conftest import compact_all, everything, write
from trackyard.config import Settings
from trackyard.storage.base import EventRecord, LogMaintenance
from trackyard.storage.factory import Backends, open_backends, open_maintenance
from trackyard.storage.sqlite._blocks import HOT_EVENTS


def _mixed(backends: Backends) -> None:
    """A second source and other types between the tracks, for filtered reads."""
    now = int(time.time() * 1000)
    events = [
        EventRecord(2, f"i-{i}", "identify", now, b'{"type":"identify","userId":"u%d"}' % i)
        for i in range(50)
    ]
    asyncio.run(backends.log.append(events, []))


def test_reads_are_the_same_across_hot_and_compacted_parts(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 12_000)
    _mixed(backends)
    write(backends, 20_000, start=12_000)
    before = everything(backends)
    head = backends.log.head_seq()
    cursors = random.Random(7).sample(range(0, head), 40)
    pages = {after: backends.log.read_events(after=after, limit=37) for after in cursors}
    filtered = (
        backends.log.read_events(after=0, limit=100, source_id=2),
        backends.log.read_events(after=100, limit=100_000, type="identify"),
        backends.log.read_events(after=5, limit=10_000, source_id=1, type="track"),
    )

    moved = compact_all(maintenance)

    extent = maintenance.extent()
    assert moved == extent.compacted_events > 0
    assert extent.blocks > 1
    assert extent.events - extent.compacted_events >= HOT_EVENTS  # the hot tail stays as it was
    assert everything(backends) == before
    assert {after: backends.log.read_events(after=after, limit=37) for after in cursors} == pages
    assert (
        backends.log.read_events(after=0, limit=100, source_id=2),
        backends.log.read_events(after=100, limit=100_000, type="identify"),
        backends.log.read_events(after=5, limit=10_000, source_id=1, type="track"),
    ) == filtered
    assert backends.log.head_seq() == head
    # A restarted reader, with no cache of decoded blocks, reads the same.
    reader = open_backends(backends.settings)
    try:
        assert everything(reader) == before
    finally:
        reader.close()


def test_a_compacted_block_takes_a_fraction_of_its_json(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 40_000)
    compact_all(maintenance)
    conn = sqlite3.connect(backends.settings.data_dir / "trackyard.db")
    json_bytes, stored = conn.execute("SELECT sum(json_bytes), sum(length(data)) FROM log_blocks").fetchone()
    conn.close()
    assert stored < 0.25 * json_bytes


def test_new_events_keep_coming_while_compaction_runs(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 25_000)
    compact_all(maintenance)
    write(backends, 10_000, start=25_000)
    compact_all(maintenance)
    events = everything(backends)
    assert [e.seq for e in events] == list(range(1, 35_001))
    assert len({e.body for e in events}) == 35_000


def test_dropped_blocks_give_their_pages_back_to_the_os(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 40_000)
    compact_all(maintenance)
    path = backends.settings.data_dir / "trackyard.db"
    conn = sqlite3.connect(path)
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    while (part := maintenance.oldest_part()) is not None:
        maintenance.drop(part)
    assert maintenance.reclaim() > 0
    (after,) = conn.execute("PRAGMA page_count").fetchone()
    conn.close()
    assert after < pages
    assert maintenance.returns_space()


def test_a_store_made_without_auto_vacuum_is_converted_by_vacuum(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    write(backends, 1_000)
    conn = sqlite3.connect(backends.settings.data_dir / "trackyard.db", isolation_level=None)
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")  # as a store made before retention existed
    conn.close()
    assert not maintenance.returns_space()
    assert maintenance.reclaim() == 0
    before = everything(backends)
    maintenance.vacuum()
    assert maintenance.returns_space()
    assert everything(backends) == before


def test_rows_whose_dedup_keys_are_only_in_memory_stay_hot(tmp_path: Path) -> None:
    """With the default 262,144 keys in memory, 25,000 events are all unflushed: compaction
    leaves them to the writer's flush, so a restart can rebuild its memory from them."""
    settings = Settings(data_dir=tmp_path / "data")
    backends = open_backends(settings, writer=True)
    maintenance = open_maintenance(settings)
    try:
        write(backends, 25_000)
        assert compact_all(maintenance) == 0
        assert maintenance.extent().compacted_events == 0
    finally:
        maintenance.close()
        backends.close()

"""Compaction on real SQLite files: the same events read back, on far fewer bytes."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

from tests.retention.conftest import compact_all, everything, run_retention_consumer, write
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
    """With the default 262,144 keys in memory and no flush by age, 25,000 events are all
    unflushed: compaction leaves them to the writer's flush, so a restart can rebuild its
    memory from them."""
    settings = Settings(data_dir=tmp_path / "data", dedup_flush_seconds=0)
    backends = open_backends(settings, writer=True)
    maintenance = open_maintenance(settings)
    try:
        write(backends, 25_000)
        assert compact_all(maintenance) == 0
        assert maintenance.extent().compacted_events == 0
    finally:
        maintenance.close()
        backends.close()


def test_keys_flushed_by_age_let_compaction_take_all_but_the_tail(tmp_path: Path) -> None:
    """By default the writer flushes keys once they are seconds old, even with no request
    after them: then compaction takes every full block outside the hot tail, and the
    window still holds after a restart."""
    settings = Settings(data_dir=tmp_path / "data")
    backends = open_backends(settings, writer=True)
    maintenance = open_maintenance(settings)
    try:
        write(backends, 25_000)
        moved, deadline = 0, time.monotonic() + 60
        while moved < 25_000 - HOT_EVENTS - 4_096:
            assert time.monotonic() < deadline, f"only {moved} events compacted"
            moved += compact_all(maintenance)
            time.sleep(0.05)
        extent = maintenance.extent()
        assert extent.events == 25_000
        assert HOT_EVENTS <= extent.events - extent.compacted_events < HOT_EVENTS + 4_096 + 100
    finally:
        maintenance.close()
        backends.close()
    restarted = open_backends(settings, writer=True)
    try:
        now = int(time.time() * 1000)
        again = [EventRecord(1, f"m-{i}", "track", now, b"{}") for i in range(0, 25_000, 9)]
        result = asyncio.run(restarted.log.append(again, []))
        assert (result.stored, result.duplicates) == (0, len(again))
    finally:
        restarted.close()


def _wal_bytes(backends: Backends) -> int:
    return (backends.settings.data_dir / "trackyard.db-wal").stat().st_size


def test_a_checkpoint_cuts_the_write_ahead_log_back_once_no_reader_holds_it(
    backends: Backends, maintenance: LogMaintenance
) -> None:
    # A reader on an old snapshot keeps SQLite's own checkpoints from going back to the
    # start of the write-ahead log, so the writes grow it, as a burst with consumers reading does.
    reader = sqlite3.connect(backends.settings.data_dir / "trackyard.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM log").fetchone()
    write(backends, 20_000)
    grown = _wal_bytes(backends)
    assert grown > 4 << 20
    before = everything(backends)
    assert maintenance.checkpoint() == 0  # the reader still needs it: given up, not waited for
    assert _wal_bytes(backends) == grown
    reader.execute("COMMIT")
    reader.close()
    assert maintenance.checkpoint() == grown
    assert _wal_bytes(backends) == 0
    assert maintenance.checkpoint() == 0  # nothing left to cut
    assert everything(backends) == before
    write(backends, 100, start=20_000)  # the writer goes on with a new write-ahead log
    assert [e.seq for e in everything(backends)][-1] == 20_100


def test_the_retention_consumer_cuts_the_write_ahead_log_back_once_ingest_pauses(
    backends: Backends,
) -> None:
    reader = sqlite3.connect(backends.settings.data_dir / "trackyard.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM log").fetchone()
    write(backends, 20_000)
    reader.execute("COMMIT")
    reader.close()
    assert _wal_bytes(backends) > 4 << 20
    before = everything(backends)
    # compacted (more WAL), then nothing came in: cut
    run_retention_consumer(
        backends,
        lambda: _wal_bytes(backends) <= 4 << 20,
        "the retention consumer left the write-ahead log as it was",
    )
    assert everything(backends) == before

"""The embedded store on real SQLite files: group commit, bounded queue, cursor, dedup tiers, migration."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.errors import Overloaded
from trackyard.storage.base import EventRecord
from trackyard.storage.sqlite.store import SQLiteStore, database_path


def record(message_id: str, source_id: int = 1, kind: str = "track") -> EventRecord:
    # Received now: dedup buckets go by receipt time, and keys of long ago have expired.
    received_at_ms = int(time.time() * 1000)
    return EventRecord(source_id, message_id, kind, received_at_ms, b'{"id":"%s"}' % message_id.encode())


def _hold_write_lock(settings: Settings) -> sqlite3.Connection:
    blocker = sqlite3.connect(database_path(settings.data_dir), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def test_waiting_requests_share_one_commit(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = SQLiteStore(settings)

    async def scenario() -> None:
        blocker = _hold_write_lock(settings)
        # The writer takes the first job and waits for the lock; the other 49 queue behind it.
        tasks = [asyncio.ensure_future(store.append([record(f"m{i}")], [])) for i in range(50)]
        while store.stats()["pending"] < 50:
            await asyncio.sleep(0.01)
        blocker.execute("COMMIT")
        results = await asyncio.gather(*tasks)
        assert all(r.stored == 1 for r in results)

    asyncio.run(scenario())
    # However the writer thread interleaves, 50 requests never cost more than two commits.
    assert store.stats()["commits"] <= 2
    assert store.count_events() == 50
    store.close()


def test_a_full_queue_refuses_instead_of_growing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_pending_events=3)
    store = SQLiteStore(settings)

    async def scenario() -> None:
        blocker = _hold_write_lock(settings)
        first = asyncio.ensure_future(store.append([record("a"), record("b")], []))
        while store.stats()["pending"] < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await store.append([record("c"), record("d")], [])
        blocker.execute("COMMIT")
        assert (await first).stored == 2

    asyncio.run(scenario())
    assert [e.seq for e in store.read_events()] == [1, 2]
    store.close()


def test_duplicates_inside_one_commit_are_stored_once(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path))
    result = asyncio.run(store.append([record("x"), record("x"), record("y")], []))
    assert (result.stored, result.duplicates) == (2, 1)
    store.close()


def test_readers_follow_the_log_with_a_cursor(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path))
    asyncio.run(store.append([record(f"m{i}") for i in range(25)], []))
    seen: list[int] = []
    after = 0
    while page := store.read_events(after=after, limit=10):
        seen += [e.seq for e in page]
        after = page[-1].seq
    assert seen == list(range(1, 26))
    store.close()


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("process", 1)])
def test_durability_modes_set_sqlite_sync(tmp_path: Path, durability: str, synchronous: int) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path, durability=durability))  # type: ignore[arg-type]
    assert store._writer is not None
    assert store._writer._conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
    assert store._writer._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def _append(store: SQLiteStore, ids: list[str], source_id: int = 1) -> tuple[int, int]:
    result = asyncio.run(store.append([record(i, source_id) for i in ids], []))
    return result.stored, result.duplicates


def _wait_for_flush(store: SQLiteStore) -> None:
    deadline = time.monotonic() + 10
    while store.stats()["flushes"] == 0:
        assert time.monotonic() < deadline, "the writer never flushed its dedup keys"
        time.sleep(0.01)


def _wait_until_flushed_through(directory: Path, seq: int) -> None:
    deadline = time.monotonic() + 10
    conn = sqlite3.connect(directory / "trackyard.db")
    try:
        while True:
            row = conn.execute("SELECT value FROM meta WHERE key = 'dedup_flushed_seq'").fetchone()
            if row is not None and row[0] >= seq:
                return
            assert time.monotonic() < deadline, "no writer flushed the dedup keys"
            time.sleep(0.01)
    finally:
        conn.close()


def test_reads_page_across_rows_and_filter_by_source_and_type(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path))
    asyncio.run(store.append([record(f"a{i}", kind="identify" if i % 2 else "track") for i in range(5)], []))
    asyncio.run(store.append([record(f"b{i}", source_id=2) for i in range(4)], []))
    asyncio.run(store.append([record(f"c{i}") for i in range(3)], []))
    assert store.head_seq() == 12
    assert store.count_events() == 12
    pages = []
    after = 0
    while page := store.read_events(after=after, limit=4):
        pages.append([e.seq for e in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert [e.seq for e in store.read_events(after=3, source_id=2)] == [6, 7, 8, 9]
    assert [e.seq for e in store.read_events(after=3, source_id=1)] == [4, 5, 10, 11, 12]
    identifies = store.read_events(type="identify")
    assert [(e.seq, e.type, e.body) for e in identifies] == [
        (2, "identify", b'{"id":"a1"}'),
        (4, "identify", b'{"id":"a3"}'),
    ]
    assert store.read_events(type="no-such-type") == []
    assert store.read_events(after=12) == []
    store.close()


def test_dedup_keys_in_memory_are_rebuilt_from_the_log_after_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dedup_flush_seconds=0)  # kept in memory: no flush by age
    store = SQLiteStore(settings)
    assert _append(store, ["x", "y"]) == (2, 0)
    store.close()
    store = SQLiteStore(settings)
    assert _append(store, ["x", "y", "z"]) == (1, 2)
    assert store.stats()["flushes"] == 0
    store.close()


def test_flushed_dedup_keys_still_dedup_in_this_writer_another_and_after_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dedup_memory_keys=8)
    ids = [f"m{i}" for i in range(20)]
    one = SQLiteStore(settings)
    assert _append(one, ids[:10]) == (10, 0)
    _wait_for_flush(one)
    # A second writer on the same files, as a second worker process has.
    two = SQLiteStore(settings)
    assert _append(two, ids) == (10, 10)
    assert _append(one, ids) == (0, 20)
    # Flushed by two, or by one first (then two lets go of the keys it had): either way
    # every key is in the tables now.
    _wait_until_flushed_through(tmp_path, 21)
    assert _append(two, ids) == (0, 20)
    one.close()
    two.close()
    three = SQLiteStore(settings)
    assert _append(three, [*ids, "new"]) == (1, 20)
    assert three.count_events() == 21
    three.close()


def test_an_idle_writer_flushes_its_dedup_keys_once_they_are_old_enough(tmp_path: Path) -> None:
    # Far from the memory's limit: only their age sends the keys to disk, with no request after.
    settings = Settings(data_dir=tmp_path, dedup_flush_seconds=1)
    store = SQLiteStore(settings)
    ids = [f"m{i}" for i in range(30)]
    assert _append(store, ids[:10]) == (10, 0)
    assert _append(store, ids[10:]) == (20, 0)
    _wait_until_flushed_through(tmp_path, 31)
    assert store.stats()["flushes"] >= 1
    assert _append(store, ids) == (0, 30)  # from the tables now
    store.close()
    restarted = SQLiteStore(settings)
    assert _append(restarted, [*ids, "new"]) == (1, 30)
    restarted.close()


_SCHEMA_2 = """
CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, write_key TEXT NOT NULL UNIQUE,
    secret_hash TEXT, enabled INTEGER NOT NULL DEFAULT 1, rate_limit REAL, created_at TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, source_id INTEGER NOT NULL, message_id TEXT NOT NULL,
    type TEXT NOT NULL, received_at INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE health (id INTEGER PRIMARY KEY, probed_at INTEGER NOT NULL);
CREATE TABLE rejects (seq INTEGER PRIMARY KEY AUTOINCREMENT, source_id INTEGER NOT NULL,
    received_at INTEGER NOT NULL, route TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
    item_index INTEGER, body BLOB NOT NULL);
PRAGMA user_version=2;
"""


def test_a_schema_2_store_is_migrated_with_its_seqs_and_dedup_keys(tmp_path: Path) -> None:
    from trackyard.storage.base import dedup_key

    old = sqlite3.connect(tmp_path / "trackyard.db", isolation_level=None)
    old.executescript(_SCHEMA_2)
    old.executemany(
        "INSERT INTO events (seq, source_id, message_id, type, received_at, body) VALUES (?, ?, ?, ?, ?, ?)",
        [(1, 1, "old-1", "track", 5, b'{"n":1}'), (2, 1, "old-2", "identify", 5, b'{"n":2}')],
    )
    # Schema 2 wrote each key into its day's dedup table when it stored the event.
    bucket = int(time.time()) // 86_400
    old.execute(f"CREATE TABLE dedup_h_{bucket} (h INTEGER PRIMARY KEY)")
    old.executemany(
        f"INSERT INTO dedup_h_{bucket} VALUES (?)", [(dedup_key(1, "old-1"),), (dedup_key(1, "old-2"),)]
    )
    old.close()
    store = SQLiteStore(Settings(data_dir=tmp_path))
    assert [(e.seq, e.type, e.body) for e in store.read_events()] == [
        (1, "track", b'{"n":1}'),
        (2, "identify", b'{"n":2}'),
    ]
    assert _append(store, ["old-1", "new"]) == (1, 1)
    assert [e.seq for e in store.read_events()] == [1, 2, 3]
    store.close()

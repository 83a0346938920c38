"""The embedded store on real SQLite files: dedup window, group commit, bounded queue, cursor."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.errors import Overloaded
from trackyard.store._dedup import DedupIndex, key_hash
from trackyard.store.base import EventRecord
from trackyard.store.sqlite import SQLiteStore


def record(message_id: str, source_id: int = 1) -> EventRecord:
    return EventRecord(source_id, message_id, "track", 0, b'{"type":"track"}')


def test_dedup_remembers_for_the_window_then_forgets(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    index = DedupIndex(window_seconds=3600)
    t0 = 1_700_000_000.0
    index.remember(conn, [(1, "a")], now=t0)
    assert index.new_keys(conn, [record("a"), record("b")], now=t0 + 3599) == {(1, "b")}
    # Another source's "a" is a different event.
    assert index.new_keys(conn, [record("a", source_id=2)], now=t0) == {(2, "a")}
    # Past the window (plus the bucket the key fell in) the bucket is dropped whole.
    assert index.new_keys(conn, [record("a")], now=t0 + 2 * 3600 + 1) == {(1, "a")}
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'dedup%'").fetchone()
    assert tables == (0,)


def test_dedup_keys_hash_the_same_in_every_process_and_run() -> None:
    # A fixed value: Python's own hash() of a str is salted per process and would break
    # dedup across restarts and worker processes.
    assert key_hash((1, "ajs-next-1700000000000-abc")) == 660452438153030620
    assert key_hash((2, "ajs-next-1700000000000-abc")) != key_hash((1, "ajs-next-1700000000000-abc"))


def test_dedup_never_forgets_before_the_window(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    index = DedupIndex(window_seconds=86_400)
    t0 = 1_700_000_000.0
    index.remember(conn, [(1, "a")], now=t0)
    for elapsed in (0, 3600, 86_399, 86_400):
        assert index.new_keys(conn, [record("a")], now=t0 + elapsed) == set(), elapsed


def _hold_write_lock(settings: Settings) -> sqlite3.Connection:
    blocker = sqlite3.connect(settings.database_path, isolation_level=None)
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

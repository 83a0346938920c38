"""Dedup keys in both tiers (memory, then flushed tables), on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trackyard.storage.base import DedupIndex, dedup_key
from trackyard.storage.sqlite import _log
from trackyard.storage.sqlite._dedup import SQLiteDedup

T0 = 1_700_000_000.0
A, B, A2 = dedup_key(1, "a"), dedup_key(1, "b"), dedup_key(2, "a")


class Clock:
    """The index's clock, set by the test: windows of hours pass in no time."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _database(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    for statement in _log.SCHEMA.split(";"):
        conn.execute(statement)
    return conn


def _index_with_a(conn: sqlite3.Connection, window: int, flushed: bool, clock: Clock) -> SQLiteDedup:
    """An index that saw key A at T0, still in memory or already flushed to its table."""
    index = SQLiteDedup(conn, window_seconds=window, memory_keys=1, clock=clock)
    index.sync(1, 1)
    index.remember(int(T0 * 1000), [A])
    index.committed(2)  # as if A's log row were seq 1
    assert index.flush_due()
    if flushed:
        index.flush()
        index.flushed()
        assert index.recent_keys == 0
        assert not index.flush_due()
    return index


def _bucket_tables(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'dedup_h_%'").fetchone()
    return int(count)


@pytest.mark.parametrize("flushed", [False, True], ids=["in memory", "flushed"])
def test_dedup_remembers_for_the_window_then_forgets(tmp_path: Path, flushed: bool) -> None:
    conn, clock = _database(tmp_path), Clock()
    index = _index_with_a(conn, 3600, flushed, clock)
    assert _bucket_tables(conn) == int(flushed)
    clock.now = T0 + 3599
    assert index.seen({A, B}) == {A}
    # Another source's "a" is a different event.
    clock.now = T0
    assert index.seen({A2}) == set()
    # Past the window (plus the bucket the key fell in) the bucket is dropped whole.
    clock.now = T0 + 2 * 3600 + 1
    index.sync(2, 2 if flushed else 1)
    assert index.seen({A}) == set()
    assert index.recent_keys == 0
    assert _bucket_tables(conn) == 0


@pytest.mark.parametrize("flushed", [False, True], ids=["in memory", "flushed"])
def test_dedup_never_forgets_before_the_window(tmp_path: Path, flushed: bool) -> None:
    conn, clock = _database(tmp_path), Clock()
    index = _index_with_a(conn, 86_400, flushed, clock)
    for elapsed in (0, 3600, 86_399, 86_400):
        clock.now = T0 + elapsed
        index.sync(2, 2 if flushed else 1)
        assert index.seen({A}) == {A}, elapsed


def test_dedup_keys_hash_the_same_in_every_process_and_run() -> None:
    # A fixed value: Python's own hash() of a str is salted per process and would break
    # dedup across restarts and worker processes.
    assert dedup_key(1, "ajs-next-1700000000000-abc") == 660452438153030620
    assert dedup_key(2, "ajs-next-1700000000000-abc") != dedup_key(1, "ajs-next-1700000000000-abc")


def test_the_sqlite_index_is_a_dedup_index(tmp_path: Path) -> None:
    index: DedupIndex = SQLiteDedup(_database(tmp_path), window_seconds=7200)
    assert index.window_seconds == 7200


def _flushed_seq(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'dedup_flushed_seq'").fetchone()
    return None if row is None else int(row[0])


def test_keys_are_flushed_by_age_long_before_memory_is_full(tmp_path: Path) -> None:
    conn, clock = _database(tmp_path), Clock()
    index = SQLiteDedup(conn, window_seconds=3600, flush_seconds=2, clock=clock)
    index.sync(1, 1)
    assert not index.flush_due()  # nothing in memory: nothing to flush, however long
    clock.now = T0 + 60
    assert not index.flush_due()
    index.remember(int(clock.now * 1000), [A, B])
    index.committed(3)  # one open segment of two keys, far from full
    clock.now = T0 + 61.9
    assert not index.flush_due()
    clock.now = T0 + 62
    assert index.flush_due()
    index.flush()
    index.flushed()
    assert index.recent_keys == 0
    assert _flushed_seq(conn) == 3
    assert index.seen({A, B, A2}) == {A, B}  # from the table now
    # The next keys make a segment of their own, due two seconds after its first key.
    index.remember(int(clock.now * 1000), [A2])
    index.committed(4)
    assert not index.flush_due()
    clock.now = T0 + 64
    assert index.flush_due()


def test_without_a_flush_age_keys_wait_for_memory_to_fill(tmp_path: Path) -> None:
    conn, clock = _database(tmp_path), Clock()
    index = SQLiteDedup(conn, window_seconds=3600, flush_seconds=0, clock=clock)
    index.sync(1, 1)
    index.remember(int(T0 * 1000), [A, B])
    index.committed(3)
    clock.now = T0 + 3000
    assert not index.flush_due()


def test_keys_another_writer_flushed_are_let_go_and_the_flushed_seq_never_goes_back(tmp_path: Path) -> None:
    conn, clock = _database(tmp_path), Clock()
    index = SQLiteDedup(conn, window_seconds=3600, flush_seconds=2, clock=clock)
    index.sync(1, 1)
    index.remember(int(T0 * 1000), [A, B])
    index.committed(3)
    # Another writer flushed through seq 10 (it had read this one's rows, and more).
    conn.execute("INSERT INTO meta (key, value) VALUES ('dedup_flushed_seq', 10)")
    clock.now = T0 + 5
    index.sync(3, 10)
    assert index.recent_keys == 0
    assert not index.flush_due()  # nothing of its own left to flush
    # A flush of a segment that ends before what is recorded leaves the record as it is.
    index.remember(int(clock.now * 1000), [A2])
    index.committed(4)
    clock.now = T0 + 7
    assert index.flush_due()
    index.flush()
    index.flushed()
    assert _flushed_seq(conn) == 10

"""Dedup keys in both tiers (memory, then flushed tables), on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trackyard.storage.sqlite import _log
from trackyard.storage.sqlite._dedup import DedupIndex, key_hash

T0 = 1_700_000_000.0
A, B, A2 = key_hash((1, "a")), key_hash((1, "b")), key_hash((2, "a"))


def _database(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    for statement in _log.SCHEMA.split(";"):
        conn.execute(statement)
    return conn


def _index_with_a(conn: sqlite3.Connection, window: int, flushed: bool) -> DedupIndex:
    """An index that saw key A at T0, still in memory or already flushed to its table."""
    index = DedupIndex(window_seconds=window, memory_keys=1)
    index.sync(conn, 1, 1, T0)
    index.add(index.bucket(int(T0 * 1000)), [A])
    index.committed(2)  # as if A's log row were seq 1
    assert index.flush_due()
    if flushed:
        index.flush(conn, T0)
        index.flushed()
        assert index.recent_keys == 0
        assert not index.flush_due()
    return index


def _bucket_tables(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'dedup_h_%'").fetchone()
    return int(count)


@pytest.mark.parametrize("flushed", [False, True], ids=["in memory", "flushed"])
def test_dedup_remembers_for_the_window_then_forgets(tmp_path: Path, flushed: bool) -> None:
    conn = _database(tmp_path)
    index = _index_with_a(conn, 3600, flushed)
    assert _bucket_tables(conn) == int(flushed)
    assert index.seen(conn, {A, B}, T0 + 3599) == {A}
    # Another source's "a" is a different event.
    assert index.seen(conn, {A2}, T0) == set()
    # Past the window (plus the bucket the key fell in) the bucket is dropped whole.
    later = T0 + 2 * 3600 + 1
    index.sync(conn, 2, 2 if flushed else 1, later)
    assert index.seen(conn, {A}, later) == set()
    assert index.recent_keys == 0
    assert _bucket_tables(conn) == 0


@pytest.mark.parametrize("flushed", [False, True], ids=["in memory", "flushed"])
def test_dedup_never_forgets_before_the_window(tmp_path: Path, flushed: bool) -> None:
    conn = _database(tmp_path)
    index = _index_with_a(conn, 86_400, flushed)
    for elapsed in (0, 3600, 86_399, 86_400):
        index.sync(conn, 2, 2 if flushed else 1, T0 + elapsed)
        assert index.seen(conn, {A}, T0 + elapsed) == {A}, elapsed


def test_dedup_keys_hash_the_same_in_every_process_and_run() -> None:
    # A fixed value: Python's own hash() of a str is salted per process and would break
    # dedup across restarts and worker processes.
    assert key_hash((1, "ajs-next-1700000000000-abc")) == 660452438153030620
    assert key_hash((2, "ajs-next-1700000000000-abc")) != key_hash((1, "ajs-next-1700000000000-abc"))

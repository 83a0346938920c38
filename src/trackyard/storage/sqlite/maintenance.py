"""The SQLite backend's :class:`~trackyard.storage.base.LogMaintenance`: compaction,
dropping whole blocks, returning free pages to the OS, and what is on disk.

It has a connection of its own and writes in short transactions (one block moved or
dropped each), taking SQLite's write lock like another worker process: the ingest writer
waits at most one such transaction, a few milliseconds.
"""

from __future__ import annotations

import time
from pathlib import Path

from trackyard.config import Settings
from trackyard.storage.base import LogExtent, LogPart
from trackyard.storage.sqlite import _blocks
from trackyard.storage.sqlite._dedup import TABLE_PREFIX
from trackyard.storage.sqlite._writer import write_transaction
from trackyard.storage.sqlite.store import connect, database_path, store_directory

#: Pages freed beyond this many bytes go back to the OS; the rest is kept for new rows
#: (the writer reuses free pages, and growing the file again costs more than keeping them).
_KEEP_FREE_BYTES = 4 * 1024 * 1024
#: Pages returned per transaction: short, so the writer never waits long.
_VACUUM_STEP_PAGES = 2048
#: A write-ahead log beyond this is cut to nothing once writes pause; below it, it is what
#: SQLite's own checkpoints (every 1,000 pages) reuse from its start.
_KEEP_WAL_BYTES = 4 * 1024 * 1024
#: How long that checkpoint waits for readers (it holds the write lock meanwhile).
_CHECKPOINT_WAIT_MS = 100
#: Files of the data dir by part of ``disk_usage`` (a name and its ``-wal``/``-shm``/``.wal``).
_FILES = {
    "profiles": ("profiles.db",),
    "consumers": ("consumers.db", "destinations.db"),
    "warehouse": ("warehouse.duckdb",),
}


def _now_ms() -> int:
    return int(time.time() * 1000)


class SQLiteMaintenance:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._directory = store_directory(settings)
        self._path = database_path(self._directory)
        self._conn = connect(self._path, settings.durability)
        # No fsync of its own: a compaction or a drop lost to a power cut is one not done
        # (the rows, or the block, are still there, whole); the writer's next commit syncs it.
        self._conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self._conn.close()

    # -- compaction --------------------------------------------------------------------

    def compact(self, force: bool = False, received_before_ms: int | None = None) -> int:
        conn = self._conn
        conn.execute("BEGIN")  # a read snapshot: the rows, compressed without the write lock
        try:
            planned = _blocks.plan(
                conn,
                self._settings.dedup_window_seconds,
                _now_ms(),
                force=force,
                received_before_ms=received_before_ms,
            )
        finally:
            conn.execute("COMMIT")
        if planned is None:
            return 0
        with write_transaction(conn):
            return _blocks.apply(conn, planned, self._settings.dedup_window_seconds, _now_ms())

    # -- retention ---------------------------------------------------------------------

    def oldest_part(self) -> LogPart | None:
        block = _blocks.oldest_block(self._conn)
        if block is None:
            return None
        return LogPart(block.seq, block.seq + block.n - 1, block.last_received_ms, block.stored_bytes)

    def oldest_hot_received_ms(self) -> int | None:
        row = self._conn.execute("SELECT received_at FROM log ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def drop(self, part: LogPart) -> None:
        with write_transaction(self._conn):
            _blocks.drop_block(self._conn, part.first_seq)

    def prune_rejects(self, before_ms: int) -> int:
        """Delete the rejects received before ``before_ms``, a few thousand per transaction."""
        dropped = 0
        while True:
            with write_transaction(self._conn):
                cursor = self._conn.execute(
                    "DELETE FROM rejects WHERE seq IN"
                    " (SELECT seq FROM rejects WHERE received_at < ? ORDER BY seq LIMIT 5000)",
                    (before_ms,),
                )
            dropped += cursor.rowcount
            if cursor.rowcount < 5000:
                return dropped

    def reclaim(self) -> int:
        """Give free pages back to the OS (auto_vacuum=INCREMENTAL), keeping a small reserve;
        the bytes returned. A store made before retention existed has no auto_vacuum: its
        free pages are reused by new rows, and ``trackyard store vacuum`` converts it."""
        if not self.returns_space():
            return 0
        (page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
        returned = 0
        while True:
            (free,) = self._conn.execute("PRAGMA freelist_count").fetchone()
            excess = free - _KEEP_FREE_BYTES // page_size
            if excess <= 0:
                return returned
            step = min(excess, _VACUUM_STEP_PAGES)
            # executescript, not execute: the pragma frees one page per step of the statement,
            # and execute() steps a statement without result rows only once.
            self._conn.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({step}); COMMIT;")
            (left,) = self._conn.execute("PRAGMA freelist_count").fetchone()
            if left >= free:
                return returned  # nothing moved: never loop on it
            returned += (free - left) * page_size

    def checkpoint(self) -> int:
        """Truncate the write-ahead log (after copying it into the database) if it is larger than
        SQLite's own checkpoints keep it: a burst of writes, or compaction, grew it. Called when
        ingest is idle: the checkpoint holds the write lock. A reader still on the log makes it
        give up (0) until the next call."""
        wal = self._path.with_name(self._path.name + "-wal")
        before = _size(wal)
        if before <= _KEEP_WAL_BYTES:
            return 0
        self._conn.execute(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
        try:
            (busy, _, _) = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self._conn.execute("PRAGMA busy_timeout=30000")
        return 0 if busy else max(before - _size(wal), 0)

    def returns_space(self) -> bool:
        # A read first: the pragma answers from the header this connection read last, which
        # another connection's VACUUM may have changed since.
        self._conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        (mode,) = self._conn.execute("PRAGMA auto_vacuum").fetchone()
        return bool(mode == 2)  # 2 is INCREMENTAL

    def vacuum(self) -> None:
        """Rewrite the database with auto_vacuum=INCREMENTAL (a store made before retention
        existed): holds the write lock until done and needs free space for a copy."""
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._conn.execute("VACUUM")

    # -- what there is -----------------------------------------------------------------

    def extent(self) -> LogExtent:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            hot = conn.execute(
                "SELECT coalesce(sum(n), 0), coalesce(sum(length(body)), 0),"
                " coalesce(sum(length(body) + length(sizes) + length(hashes) + length(types)), 0),"
                " min(seq), (SELECT received_at FROM log ORDER BY seq LIMIT 1),"
                " (SELECT seq + n - 1 FROM log ORDER BY seq DESC LIMIT 1) FROM log"
            ).fetchone()
            cold = conn.execute(
                "SELECT coalesce(sum(n), 0), coalesce(sum(json_bytes), 0), coalesce(sum(length(data)), 0),"
                " min(seq), (SELECT first_received_at FROM log_blocks ORDER BY seq LIMIT 1),"
                " count(*) FROM log_blocks"
            ).fetchone()
        finally:
            conn.execute("COMMIT")
        oldest_seq = cold[3] if cold[3] is not None else hot[3]
        oldest_ms = cold[4] if cold[4] is not None else hot[4]
        return LogExtent(
            events=hot[0] + cold[0],
            compacted_events=cold[0],
            blocks=cold[5],
            oldest_seq=oldest_seq or 0,
            oldest_received_ms=oldest_ms,
            head_seq=hot[5] or 0,
            json_bytes=hot[1] + cold[1],
            stored_bytes=hot[2] + cold[2],
        )

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk by part: log, dedup, rejects, other (sources, meta), free (pages kept
        for reuse), wal (the write-ahead log, bounded), profiles, consumers, warehouse."""
        usage = dict.fromkeys(("log", "dedup", "rejects", "other", "free", "wal"), 0)
        rows = self._conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        for name, size in rows:
            if name in ("log", "log_blocks"):
                usage["log"] += size
            elif name.startswith(TABLE_PREFIX):
                usage["dedup"] += size
            elif name == "rejects":
                usage["rejects"] += size
            else:
                usage["other"] += size
        (free,) = self._conn.execute("PRAGMA freelist_count").fetchone()
        (page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
        usage["free"] = free * page_size
        usage["wal"] = _size(self._path.with_name(self._path.name + "-wal"))
        usage.update(file_usage(self._settings.data_dir))
        return usage


def file_usage(data_dir: Path) -> dict[str, int]:
    """Bytes of the data dir's other files by part: profiles, consumers, warehouse (0 for
    what is not there, such as everything but the warehouse with PostgreSQL state)."""
    return {
        part: sum(_size(data_dir / f"{name}{suffix}") for name in names for suffix in ("", "-wal", ".wal"))
        for part, names in _FILES.items()
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

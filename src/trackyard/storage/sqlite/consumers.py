"""What consumers keep besides their output: cursors and dead letters in ``consumers.db``,
leases as ``flock``s on files under ``<data dir>/leases/``.

A database of its own, so a consumer committing its cursor never waits for the event
log's write lock (nor the log's writers for it). Leases are non-blocking ``flock``s: the
kernel releases one when the last descriptor of its open file closes, so a holder that
dies (SIGKILL included) frees it at once, with no timeout to wait out. A child process
that inherits the descriptor holds the lease together with its parent: it stays held
until both are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from trackyard.storage.base import DeadLetter, StoredEvent

FILENAME = "consumers.db"
LEASE_DIR = "leases"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_consumer ON dead_letters (consumer, id);
"""


class _Database:
    """One connection to ``consumers.db``, shared by the cursor and dead-letter stores of a process."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            data_dir / FILENAME, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A cursor is the promise that what is behind it was handled: fsync every commit.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._lock = threading.Lock()
        self._users = 0
        with self._lock:
            self._conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def retain(self) -> _Database:
        self._users += 1
        return self

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._conn.close()


class SQLiteCursors:
    """:class:`~trackyard.storage.base.CursorStore` in ``consumers.db``."""

    def __init__(self, db: _Database) -> None:
        self._db = db.retain()

    def get(self, consumer: str) -> int:
        rows = self._db.execute("SELECT cursor FROM cursors WHERE consumer = ?", (consumer,))
        return int(rows[0][0]) if rows else 0

    def commit(self, consumer: str, cursor: int) -> None:
        self._db.execute(
            "INSERT INTO cursors (consumer, cursor, updated_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, "
            "updated_at_ms = excluded.updated_at_ms",
            (consumer, cursor, _now_ms()),
        )

    def close(self) -> None:
        self._db.release()


class SQLiteDeadLetters:
    """:class:`~trackyard.storage.base.DeadLetters` in ``consumers.db``."""

    def __init__(self, db: _Database) -> None:
        self._db = db.retain()

    def add(self, consumer: str, event: StoredEvent, reason: str, attempts: int) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (consumer, seq, source_id, type, body, reason, attempts, failed_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (consumer, event.seq, event.source_id, event.type, event.body, reason, attempts, _now_ms()),
        )

    def read(self, consumer: str | None = None, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        columns = "id, consumer, seq, source_id, type, body, reason, attempts, failed_at_ms"
        if consumer is None:
            rows = self._db.execute(
                f"SELECT {columns} FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        else:
            rows = self._db.execute(
                f"SELECT {columns} FROM dead_letters WHERE consumer = ? AND id > ? ORDER BY id LIMIT ?",
                (consumer, after, limit),
            )
        return [DeadLetter(*row) for row in rows]

    def count(self, consumer: str) -> int:
        rows = self._db.execute("SELECT count(*) FROM dead_letters WHERE consumer = ?", (consumer,))
        return int(rows[0][0])

    def prune(self, before_ms: int) -> int:
        rows = self._db.execute("DELETE FROM dead_letters WHERE failed_at_ms < ? RETURNING id", (before_ms,))
        return len(rows)

    def close(self) -> None:
        self._db.release()


def read_cursors(data_dir: Path) -> dict[str, int]:
    """Every consumer's committed cursor in ``consumers.db`` (none when it was never created)."""
    if not (data_dir / FILENAME).exists():
        return {}
    db = _Database(data_dir)
    try:
        return {name: int(cursor) for name, cursor in db.execute("SELECT consumer, cursor FROM cursors")}
    finally:
        db.release()


def open_consumer_stores(data_dir: Path) -> tuple[SQLiteCursors, SQLiteDeadLetters]:
    """The cursor and dead-letter stores, over one connection (closed with the last of them)."""
    db = _Database(data_dir)
    return SQLiteCursors(db), SQLiteDeadLetters(db)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _FlockLease:
    def __init__(self, name: str, fd: int) -> None:
        self._name = name
        self._fd: int | None = fd

    @property
    def name(self) -> str:
        return self._name

    def fileno(self) -> int | None:
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor of the open file releases the lock
            self._fd = None


class FlockLeases:
    """:class:`~trackyard.storage.base.LeaseProvider` over ``flock`` on ``<data dir>/leases/<name>.lock``."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir / LEASE_DIR

    def acquire(self, name: str) -> _FlockLease | None:
        self._dir.mkdir(parents=True, exist_ok=True)
        # A new open file each time: flock conflicts between open files even in one process,
        # so a second acquire here fails like one from another process.
        fd = os.open(self._dir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _FlockLease(name, fd)

    def running(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Nothing to take: the child inherited the supervisor's locked descriptor."""
        return contextlib.nullcontext()

    def held(self, name: str) -> bool:
        if not (self._dir / f"{name}.lock").exists():
            return False
        lease = self.acquire(name)
        if lease is None:
            return True
        lease.release()
        return False

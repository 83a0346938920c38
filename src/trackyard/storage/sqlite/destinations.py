"""The destination registry in ``destinations.db``: where events are delivered onward.

A database of its own, so editing a destination never waits for the event log's write
lock. Keys and secrets are needed in the clear to authenticate and sign each request
(unlike source secrets, which are only verified and so kept hashed): the file is created
readable by its owner only, and no command prints them after ``destinations add``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trackyard.storage._destination_tables import DestinationTables, Statement
from trackyard.storage.destinations import DestinationExists
from trackyard.storage.sqlite._writer import write_transaction

FILENAME = "destinations.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    key TEXT,
    secret TEXT,
    headers TEXT NOT NULL,
    sources TEXT NOT NULL,
    types TEXT NOT NULL,
    events TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery_status (
    name TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL,
    last_error TEXT,
    last_error_at_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery_counts (
    name TEXT NOT NULL,
    class TEXT NOT NULL,
    requests INTEGER NOT NULL,
    events INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    PRIMARY KEY (name, class)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    skipped_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS in_retry (
    name TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    attempts INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parked (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS parked_due ON parked (name, due_ms);
"""


class SQLiteDestinations(DestinationTables):
    """The registry. Thread-safe: the delivery process reads it from its manager thread."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / FILENAME
        if not path.exists():  # owner-only from the first byte: it holds credentials
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(destinations)")}
            if "ordered" not in columns:  # a registry from before the order toggle
                self._conn.execute("ALTER TABLE destinations ADD COLUMN ordered INTEGER NOT NULL DEFAULT 1")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self, *statements: Statement, conflict: str = "") -> int:
        try:
            with self._lock, write_transaction(self._conn):
                counts = [self._conn.execute(sql, params).rowcount for sql, params in statements]
        except sqlite3.IntegrityError:
            raise DestinationExists(conflict) from None
        return counts[0]

    def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._lock, write_transaction(self._conn):
            self._conn.executemany(sql, rows)

    def close(self) -> None:
        self._conn.close()


def registry_exists(data_dir: Path) -> bool:
    """Whether a destination was ever added here (the delivery consumer runs only then)."""
    return (data_dir / FILENAME).exists()

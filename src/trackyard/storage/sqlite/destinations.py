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
import time
from pathlib import Path

from trackyard.storage.destinations import (
    COLUMNS,
    Destination,
    DestinationExists,
    NoSuchDestination,
    destination_from_row,
    destination_row,
)

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
"""


class SQLiteDestinations:
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

    def destinations(self) -> list[Destination]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM destinations ORDER BY name").fetchall()
        return [destination_from_row(row) for row in rows]

    def get(self, name: str) -> Destination:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {COLUMNS} FROM destinations WHERE name = ?", (name,)
            ).fetchall()
        if not rows:
            raise NoSuchDestination(name)
        return destination_from_row(rows[0])

    def add(self, destination: Destination) -> Destination:
        d = destination
        try:
            with self._lock:
                self._conn.execute(
                    f"INSERT INTO destinations ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    destination_row(d, int(time.time() * 1000)),
                )
        except sqlite3.IntegrityError:
            raise DestinationExists(d.name) from None
        return self.get(d.name)

    def set_enabled(self, name: str, enabled: bool) -> Destination:
        with self._lock:
            changed = self._conn.execute(
                "UPDATE destinations SET enabled = ? WHERE name = ?", (int(enabled), name)
            ).rowcount
        if not changed:
            raise NoSuchDestination(name)
        return self.get(name)

    def remove(self, name: str) -> Destination:
        destination = self.get(name)
        with self._lock:
            self._conn.execute("DELETE FROM destinations WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM delivery_status WHERE name = ?", (name,))
        return destination

    def record(self, name: str, delivered: int, error: str | None = None) -> None:
        """Count ``delivered`` more events to ``name``, and keep ``error`` as its last one.

        Once a request, not once an event: the counts are for ``destinations show``.
        """
        at = int(time.time() * 1000) if error is not None else None
        with self._lock:
            self._conn.execute(
                "INSERT INTO delivery_status (name, delivered, last_error, last_error_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "delivered = delivered + excluded.delivered, "
                "last_error = coalesce(excluded.last_error, last_error), "
                "last_error_at_ms = coalesce(excluded.last_error_at_ms, last_error_at_ms)",
                (name, delivered, error, at),
            )

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms), from :meth:`record`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT delivered, last_error, last_error_at_ms FROM delivery_status WHERE name = ?", (name,)
            ).fetchall()
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, None, None)

    def close(self) -> None:
        self._conn.close()


def registry_exists(data_dir: Path) -> bool:
    """Whether a destination was ever added here (the delivery consumer runs only then)."""
    return (data_dir / FILENAME).exists()

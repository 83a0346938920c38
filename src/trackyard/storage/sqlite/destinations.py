"""The destination registry in ``destinations.db``: where events are delivered onward.

A database of its own, so editing a destination never waits for the event log's write
lock. Keys and secrets are needed in the clear to authenticate and sign each request
(unlike source secrets, which are only verified and so kept hashed): the file is created
readable by its owner only, and no command prints them after ``destinations add``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import (
    Destination,
    DestinationExists,
    NoSuchDestination,
    Parked,
    RequestCounts,
    SkippedEvent,
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
_COLUMNS = (
    "name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, ordered, "
    "created_at_ms"
)
_PARKED = "id, seq, source_id, type, body, attempts, first_failed_ms, due_ms, reason"


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
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(destinations)")}
            if "ordered" not in columns:  # a registry from before the order toggle
                self._conn.execute("ALTER TABLE destinations ADD COLUMN ordered INTEGER NOT NULL DEFAULT 1")

    def destinations(self) -> list[Destination]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM destinations ORDER BY name").fetchall()
        return [_destination(row) for row in rows]

    def get(self, name: str) -> Destination:
        rows = self._select(f"SELECT {_COLUMNS} FROM destinations WHERE name = ?", (name,))
        if not rows:
            raise NoSuchDestination(name)
        return _destination(rows[0])

    def add(self, destination: Destination) -> Destination:
        try:
            with self._lock:
                self._conn.execute(
                    f"INSERT INTO destinations ({_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                    _row(destination, int(time.time() * 1000)),
                )
        except sqlite3.IntegrityError:
            raise DestinationExists(destination.name) from None
        return self.get(destination.name)

    def update(self, destination: Destination) -> Destination:
        created = self.get(destination.name).created_at_ms
        with self._lock:
            self._conn.execute(
                f"REPLACE INTO destinations ({_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                _row(destination, created),
            )
        return self.get(destination.name)

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
            for table in ("delivery_status", "delivery_counts", "in_retry", "parked"):
                self._conn.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
        return destination

    def record(
        self,
        name: str,
        delivered: int,
        error: str | None = None,
        requests: Mapping[str, RequestCounts] | None = None,
    ) -> None:
        """Count ``delivered`` more events to ``name``, keep ``error`` as its last one, and add
        ``requests`` to its counts by status class, in one transaction.

        Once a request outcome or a batch, never once an event: the sink adds up its
        deliveries in memory and records them with the batch (``destinations show``, /metrics).
        """
        at = int(time.time() * 1000) if error is not None else None
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO delivery_status (name, delivered, last_error, last_error_at_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "delivered = delivered + excluded.delivered, "
                "last_error = coalesce(excluded.last_error, last_error), "
                "last_error_at_ms = coalesce(excluded.last_error_at_ms, last_error_at_ms)",
                (name, delivered, error, at),
            )
            if requests:
                conn.executemany(
                    "INSERT INTO delivery_counts (name, class, requests, events, retries) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, class) DO UPDATE SET "
                    "requests = requests + excluded.requests, events = events + excluded.events, "
                    "retries = retries + excluded.retries",
                    [(name, k, c.requests, c.events, c.retries) for k, c in requests.items()],
                )

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms), from :meth:`record`."""
        rows = self._select(
            "SELECT delivered, last_error, last_error_at_ms FROM delivery_status WHERE name = ?", (name,)
        )
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, None, None)

    def request_counts(self, name: str) -> dict[str, RequestCounts]:
        rows = self._select(
            "SELECT class, requests, events, retries FROM delivery_counts WHERE name = ? ORDER BY class",
            (name,),
        )
        return {kind: RequestCounts(int(r), int(e), int(t)) for kind, r, e, t in rows}

    def skip(self, name: str, skips: Sequence[tuple[int, str, str]]) -> None:
        at = int(time.time() * 1000)
        self._insert_all(
            "INSERT OR IGNORE INTO skipped (name, seq, type, reason, skipped_at_ms) VALUES (?, ?, ?, ?, ?)",
            [(name, seq, kind, reason, at) for seq, kind, reason in skips],
        )

    def set_retrying(self, name: str, events: int, attempts: int) -> None:
        with self._lock:
            if events:
                self._conn.execute(
                    "REPLACE INTO in_retry (name, events, attempts) VALUES (?, ?, ?)",
                    (name, events, attempts),
                )
            else:
                self._conn.execute("DELETE FROM in_retry WHERE name = ?", (name,))

    def retrying(self, name: str) -> tuple[int, int]:
        with self._lock:
            in_hand = self._conn.execute(
                "SELECT events, attempts FROM in_retry WHERE name = ?", (name,)
            ).fetchall()
            parked = self._conn.execute(
                "SELECT count(*), coalesce(max(attempts), 0) FROM parked WHERE name = ?", (name,)
            ).fetchall()
        events, attempts = (int(in_hand[0][0]), int(in_hand[0][1])) if in_hand else (0, 0)
        return events + int(parked[0][0]), max(attempts, int(parked[0][1]))

    def park(self, name: str, parked: Sequence[Parked]) -> None:
        self._insert_all(
            f"INSERT INTO parked (name, {_PARKED.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (name, p.event.seq, p.event.source_id, p.event.type, p.event.body)
                + (p.attempts, p.first_failed_ms, p.due_ms, p.reason)
                for p in parked
            ],
        )

    def _select(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _insert_all(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """All of ``rows`` in one transaction, or none."""
        with self._transaction() as conn:
            conn.executemany(sql, rows)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def skipped(self, name: str, after: int = 0, limit: int = 1000) -> list[SkippedEvent]:
        rows = self._select(
            "SELECT seq, type, reason, skipped_at_ms FROM skipped WHERE name = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (name, after, limit),
        )
        return [SkippedEvent(int(seq), kind, reason, int(at)) for seq, kind, reason, at in rows]

    def skip_counts(self, name: str) -> dict[str, int]:
        rows = self._select(
            "SELECT reason, count(*) FROM skipped WHERE name = ? GROUP BY reason ORDER BY count(*) DESC",
            (name,),
        )
        return {reason: int(count) for reason, count in rows}

    def due(self, name: str, now_ms: int, limit: int) -> list[Parked]:
        rows = self._select(
            f"SELECT {_PARKED} FROM parked WHERE name = ? AND due_ms <= ? ORDER BY seq LIMIT ?",
            (name, now_ms, limit),
        )
        return [Parked(row[0], StoredEvent(*row[1:5]), *row[5:]) for row in rows]

    def reschedule(self, parked: Parked) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE parked SET attempts = ?, due_ms = ?, reason = ? WHERE id = ?",
                (parked.attempts, parked.due_ms, parked.reason, parked.id),
            )

    def unpark(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM parked WHERE id = ?", [(i,) for i in ids])

    def close(self) -> None:
        self._conn.close()


def registry_exists(data_dir: Path) -> bool:
    """Whether a destination was ever added here (the delivery consumer runs only then)."""
    return (data_dir / FILENAME).exists()


def _row(d: Destination, created_at_ms: int) -> tuple[object, ...]:
    return (
        d.name,
        d.kind,
        d.url,
        d.key,
        d.secret,
        json.dumps([list(h) for h in d.headers]),
        json.dumps(list(d.sources)),
        json.dumps(list(d.types)),
        json.dumps(list(d.events)),
        d.batch_size,
        int(d.enabled),
        int(d.ordered),
        created_at_ms,
    )


def _destination(row: tuple[Any, ...]) -> Destination:
    name, kind, url, key, secret, headers, sources, types, events, batch_size, enabled, ordered, created = row
    return Destination(
        name=name,
        kind=kind,
        url=url,
        key=key,
        secret=secret,
        headers=tuple((str(h[0]), str(h[1])) for h in json.loads(headers)),
        sources=tuple(json.loads(sources)),
        types=tuple(json.loads(types)),
        events=tuple(json.loads(events)),
        batch_size=int(batch_size),
        enabled=bool(enabled),
        ordered=bool(ordered),
        created_at_ms=int(created),
    )

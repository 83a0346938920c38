"""messageId deduplication over a time window, in bucket tables that expire whole.

Each bucket (a day, or an hour for windows under a day) is one ``WITHOUT ROWID`` table
keyed by ``(source_id, message_id)``. Expiring a bucket is a ``DROP TABLE``, so no index
on time is maintained per event and pruning costs nothing per row. A messageId is
remembered for at least the window: a bucket is dropped only once its newest possible
entry is older than the window.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from trackyard.store.base import EventRecord

_PREFIX = "dedup_"
# SQLite's default limit on bound parameters is far above this; the chunk keeps statements small.
_CHUNK = 500


#: How often the list of bucket tables is re-read (other worker processes create and drop them).
_RELIST_SECONDS = 30.0


class DedupIndex:
    def __init__(self, window_seconds: int) -> None:
        self.window = max(window_seconds, 60)
        self.bucket_seconds = 86_400 if self.window >= 86_400 else 3_600
        self._tables: list[str] = []
        self._listed_at = float("-inf")

    def _live_tables(self, conn: sqlite3.Connection, now: float) -> list[str]:
        """The live bucket tables, re-listed (and expired ones dropped) every few seconds.

        Also re-listed while the current bucket's table is not known yet: another worker
        process may have just created it, and its keys must be seen at once.
        """
        current = f"{_PREFIX}{int(now) // self.bucket_seconds}"
        if now - self._listed_at < _RELIST_SECONDS and current in self._tables:
            return self._tables
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'dedup_%'"
            )
        ]
        live = []
        for name in names:
            bucket = int(name.removeprefix(_PREFIX))
            if (bucket + 1) * self.bucket_seconds + self.window <= now:
                conn.execute(f"DROP TABLE {name}")
            else:
                live.append(name)
        self._tables, self._listed_at = live, now
        return live

    def new_keys(
        self, conn: sqlite3.Connection, events: Sequence[EventRecord], now: float | None = None
    ) -> set[tuple[int, str]]:
        """The keys among ``events`` not seen inside the window (inside a write transaction)."""
        keys = {(e.source_id, e.message_id) for e in events}
        if not keys:
            return keys
        by_source: dict[int, list[str]] = {}
        for source_id, message_id in keys:
            by_source.setdefault(source_id, []).append(message_id)
        moment = time.time() if now is None else now
        try:
            self._discard_seen(conn, self._live_tables(conn, moment), by_source, keys)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            # Another worker process dropped an expired bucket since the list was read.
            self._listed_at = float("-inf")
            self._discard_seen(conn, self._live_tables(conn, moment), by_source, keys)
        return keys

    def _discard_seen(
        self,
        conn: sqlite3.Connection,
        tables: list[str],
        by_source: dict[int, list[str]],
        keys: set[tuple[int, str]],
    ) -> None:
        for table in tables:
            for source_id, ids in by_source.items():
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT message_id FROM {table} WHERE source_id = ? AND message_id IN ({marks})",
                        (source_id, *chunk),
                    )
                    for (message_id,) in rows:
                        keys.discard((source_id, message_id))

    def remember(
        self, conn: sqlite3.Connection, keys: Iterable[tuple[int, str]], now: float | None = None
    ) -> None:
        rows = list(keys)
        if not rows:
            return
        table = f"{_PREFIX}{int(time.time() if now is None else now) // self.bucket_seconds}"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (source_id INTEGER NOT NULL, message_id TEXT NOT NULL,"
            " PRIMARY KEY (source_id, message_id)) WITHOUT ROWID"
        )
        conn.executemany(f"INSERT OR IGNORE INTO {table} (source_id, message_id) VALUES (?, ?)", rows)
        if table not in self._tables:
            self._tables.append(table)

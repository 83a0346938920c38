"""messageId deduplication over a time window, in bucket tables that expire whole.

Each bucket (a day, or an hour for windows under a day) is one table whose integer
primary key is a 64-bit BLAKE2b hash of ``(source_id, message_id)``. An integer key keeps
the index small: the random inserts into it, about one page write per event, are the
dedup's whole cost, and they are half as dear as with text keys. Two different messageIds
share a hash with a probability of about n / 2^64 for n ids in the window (below 10^-11 for
100 million). Expiring a bucket is a ``DROP TABLE``, so no index on time is kept and
pruning costs nothing per row. A messageId is remembered for at least the window: a bucket
is dropped only once its newest possible entry is older than the window.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence

from trackyard.store.base import EventRecord

_PREFIX = "dedup_h_"
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
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0].startswith(_PREFIX)
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
        by_hash = {key_hash(key): key for key in keys}
        moment = time.time() if now is None else now
        try:
            seen = self._seen(conn, self._live_tables(conn, moment), list(by_hash))
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            # Another worker process dropped an expired bucket since the list was read.
            self._listed_at = float("-inf")
            seen = self._seen(conn, self._live_tables(conn, moment), list(by_hash))
        return keys.difference(by_hash[h] for h in seen)

    def _seen(self, conn: sqlite3.Connection, tables: list[str], hashes: list[int]) -> set[int]:
        seen: set[int] = set()
        for table in tables:
            for start in range(0, len(hashes), _CHUNK):
                chunk = hashes[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                seen.update(h for (h,) in conn.execute(f"SELECT h FROM {table} WHERE h IN ({marks})", chunk))
        return seen

    def remember(
        self, conn: sqlite3.Connection, keys: Iterable[tuple[int, str]], now: float | None = None
    ) -> None:
        rows = [(key_hash(key),) for key in keys]
        if not rows:
            return
        table = f"{_PREFIX}{int(time.time() if now is None else now) // self.bucket_seconds}"
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (h INTEGER PRIMARY KEY)")
        conn.executemany(f"INSERT OR IGNORE INTO {table} (h) VALUES (?)", rows)
        if table not in self._tables:
            self._tables.append(table)


def key_hash(key: tuple[int, str]) -> int:
    """A signed 64-bit hash of ``(source_id, message_id)``, stable across processes and runs."""
    digest = hashlib.blake2b(f"{key[0]}\x00{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)

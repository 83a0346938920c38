"""A :class:`~trackyard.storage.base.DedupIndex` of its own, in the state database: for a
log kept elsewhere (NATS JetStream, ``storage/nats/``), whose own dedup window is minutes.

The log's index (``_dedup.py``) holds recent keys in memory because the log rows are
their durable copy; here nothing else holds them, so :meth:`remember` writes each call's
keys straight into the bucket tables, in one transaction. SQLite's write lock makes the
index shared by every process on the data dir (two collectors on one state directory see
each other's keys at once).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

from trackyard.config import Durability
from trackyard.storage.sqlite._dedup import BucketTables
from trackyard.storage.sqlite._writer import write_transaction
from trackyard.storage.sqlite.store import connect, database_path


class SQLiteDedupIndex:
    """The dedup keys of the last ``window_seconds``, in the state database of ``directory``."""

    def __init__(self, directory: Path, window_seconds: int, durability: Durability) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._conn = connect(database_path(directory), durability)
        self._lock = threading.Lock()
        self._tables = BucketTables(window_seconds)

    @property
    def window_seconds(self) -> int:
        return self._tables.window

    def seen(self, keys: set[int]) -> set[int]:
        if not keys:
            return set()
        with self._lock:
            return self._tables.seen(self._conn, list(keys))

    def remember(self, received_at_ms: int, keys: Collection[int]) -> None:
        self.remember_many([(received_at_ms, keys)])

    def remember_many(self, parts: Collection[tuple[int, Collection[int]]]) -> None:
        """Several :meth:`remember` calls in one transaction (one fsync)."""
        by_bucket: dict[int, set[int]] = defaultdict(set)
        for received_at_ms, keys in parts:
            by_bucket[self._tables.bucket(received_at_ms)].update(keys)
        if not any(by_bucket.values()):
            return
        with self._lock, write_transaction(self._conn):
            for bucket, keys in by_bucket.items():
                self._tables.add(self._conn, bucket, keys)

    def close(self) -> None:
        self._conn.close()

"""The SQLite log's :class:`~trackyard.storage.base.DedupIndex`: recent keys in memory,
older ones in SQLite tables of the log's database.

A key is :func:`~trackyard.storage.base.dedup_key`, a 64-bit BLAKE2b hash of
``(source_id, message_id)``. The writer injects the index with its own connection and
calls it inside its write transactions, so the check and the insert commit together.

Inserting random keys into an on-disk B-tree one commit at a time costs about one page
write per event, which made dedup the dearest part of every commit. So keys live in two
tiers, as in an LSM tree:

- **Recent keys** sit in memory, in one set per time bucket. They are not written on
  their own: every log row carries the hashes of its events, so the log is their
  durable copy, and the sets are rebuilt from it at start-up.
- **Flushed keys.** Once memory holds ``memory_keys`` keys, or its oldest key is
  ``flush_seconds`` old, its oldest segment (the keys of a run of log rows) is written,
  sorted, into one table per bucket (an integer primary key) in one transaction. Sorted
  inserts touch each page of the table once per flush instead of once per event. A row in
  ``meta`` records the seq the flushes reached. The flush by age bounds the log rows that
  compaction must leave alone (their keys are only in memory) to seconds of traffic.

Worker processes each have a writer, and each writer's memory holds every key the log has
after the last flush: before each commit (under SQLite's write lock) a writer reads the
hashes of the rows other processes appended since its own last commit, and after another
process's flush it lets go of the segments that flush covered. Expiring a bucket is a
``DROP TABLE`` (and dropping a set), so no index on time is kept. A key is remembered for
at least the window: a bucket is dropped only once its newest possible entry is older
than the window.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Collection

_PREFIX = "dedup_h_"
#: The bucket tables are named this plus the bucket number (for status, which counts their bytes).
TABLE_PREFIX = _PREFIX
# SQLite's default limit on bound parameters is far above this; the chunk keeps statements small.
_CHUNK = 500
#: How often the list of bucket tables is re-read (other worker processes create and drop them).
_RELIST_SECONDS = 30.0
#: Keys held in memory before flushes start: about 100 bytes each (two sets), so ~26 MB.
FLUSH_KEYS = 262_144  # the default of Settings.dedup_memory_keys
#: Keys written per flush transaction: about 30 ms of SQLite work.
SEGMENT_KEYS = 16_384
#: ... and the age of its oldest key beyond which a segment is flushed however small.
FLUSH_SECONDS = 2  # the default of Settings.dedup_flush_seconds
FLUSHED_KEY = "dedup_flushed_seq"


def pack_hashes(hashes: list[int]) -> bytes:
    packed = array("q", hashes)
    if sys.byteorder == "big":  # the file format is little-endian everywhere
        packed.byteswap()
    return packed.tobytes()


def unpack_hashes(blob: bytes) -> array[int]:
    hashes = array("q")
    hashes.frombytes(blob)
    if sys.byteorder == "big":
        hashes.byteswap()
    return hashes


class BucketTables:
    """The keys on disk: one table per time bucket (an integer primary key), so expiring a
    bucket is a ``DROP TABLE``. Shared by the log's index and the standalone one
    (``dedup_index.py``); every method runs on the caller's connection."""

    def __init__(self, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.window = max(window_seconds, 60)
        self.bucket_seconds = 86_400 if self.window >= 86_400 else 3_600
        self._tables: list[str] = []
        self._listed_at = float("-inf")

    def bucket(self, received_at_ms: int) -> int:
        return received_at_ms // 1000 // self.bucket_seconds

    def expired(self, bucket: int, now: float) -> bool:
        return (bucket + 1) * self.bucket_seconds + self.window <= now

    def relist(self) -> None:
        """Read the list of tables again at the next lookup (another process made or dropped some)."""
        self._listed_at = float("-inf")

    def add(self, conn: sqlite3.Connection, bucket: int, keys: Collection[int]) -> None:
        """Write ``keys`` into ``bucket``'s table, sorted (inside the caller's write transaction)."""
        table = f"{_PREFIX}{bucket}"
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (h INTEGER PRIMARY KEY)")
        conn.executemany(f"INSERT OR IGNORE INTO {table} (h) VALUES (?)", ((h,) for h in sorted(keys)))
        if table not in self._tables:
            self._tables.append(table)

    def seen(self, conn: sqlite3.Connection, hashes: list[int]) -> set[int]:
        """The keys among ``hashes`` in the live tables."""
        now = self._clock()
        try:
            return self._seen_in(conn, self._live(conn, now), hashes)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            # Another process dropped an expired bucket since the list was read.
            self.relist()
            return self._seen_in(conn, self._live(conn, now), hashes)

    def _live(self, conn: sqlite3.Connection, now: float) -> list[str]:
        """The live bucket tables, re-listed (and expired ones dropped) every few seconds."""
        if now - self._listed_at < _RELIST_SECONDS:
            return self._tables
        names = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0].startswith(_PREFIX)
        ]
        live = []
        for name in names:
            if self.expired(int(name.removeprefix(_PREFIX)), now):
                conn.execute(f"DROP TABLE {name}")
            else:
                live.append(name)
        self._tables, self._listed_at = live, now
        return live

    @staticmethod
    def _seen_in(conn: sqlite3.Connection, tables: list[str], hashes: list[int]) -> set[int]:
        seen: set[int] = set()
        for table in tables:
            for start in range(0, len(hashes), _CHUNK):
                chunk = hashes[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                seen.update(h for (h,) in conn.execute(f"SELECT h FROM {table} WHERE h IN ({marks})", chunk))
        return seen


class _Segment:
    """The hashes of the log rows from the previous segment's end up to ``end``, by bucket."""

    __slots__ = ("end", "keys", "since")

    def __init__(self, end: int) -> None:
        self.end = end
        self.keys: dict[int, set[int]] = {}
        #: When its first key came (the clock's time), ``None`` while it has none.
        self.since: float | None = None

    @property
    def size(self) -> int:
        return sum(len(keys) for keys in self.keys.values())


class SQLiteDedup:
    """The keys seen inside the window. Used only by a writer, on its connection, inside its
    write transactions: :meth:`sync` first in each, then :meth:`seen`; after the commit
    :meth:`remember` and :meth:`committed`.

    Keys in memory are grouped in segments of consecutive log rows, so that a flush writes
    one sealed segment (``segment_keys`` keys, tens of milliseconds) rather than all of
    memory at once: requests never wait long behind a flush.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        window_seconds: int,
        memory_keys: int = FLUSH_KEYS,
        segment_keys: int = SEGMENT_KEYS,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._tables = BucketTables(window_seconds, clock)
        self.window = self._tables.window
        self.bucket_seconds = self._tables.bucket_seconds
        self.memory_keys = memory_keys
        self.segment_keys = max(1, min(segment_keys, memory_keys // 4))
        #: 0: flushed only once memory is full.
        self.flush_seconds = flush_seconds
        #: Hashes of the log rows at seqs >= ``_flushed``, oldest segment first, and all of
        #: them in one set too, so that a lookup is one set operation however many segments.
        self._segments: deque[_Segment] = deque()
        self._recent: set[int] = set()
        self._flushed: int | None = None
        #: The seq the next log row gets, as far as memory knows the log.
        self._next_seq = 0

    @property
    def window_seconds(self) -> int:
        return self.window

    def bucket(self, received_at_ms: int) -> int:
        return self._tables.bucket(received_at_ms)

    @property
    def recent_keys(self) -> int:
        return len(self._recent)

    def sync(self, next_seq: int, flushed: int) -> None:
        """Catch up with the log (inside a write transaction): ``next_seq`` and ``flushed`` as read now."""
        now = self._clock()
        if self._flushed is None:
            self._flushed = self._next_seq = flushed
            self._segments.append(_Segment(flushed))
        elif flushed > self._flushed:
            # Another process flushed: what it wrote to the tables need not stay in memory.
            while len(self._segments) > 1 and self._segments[0].end <= flushed:
                self._forget(self._segments.popleft())
            if self._segments[0].end <= flushed:
                # The open segment too (a flush by age seals it): start a new one, or its
                # age would make this writer flush those keys again.
                self._forget(self._segments.popleft())
                self._segments.append(_Segment(self._next_seq))
            self._flushed = flushed
            self._tables.relist()  # the flush may have made new tables
        if next_seq != self._next_seq:
            rows = self._conn.execute(
                "SELECT seq + n, received_at, hashes FROM log WHERE seq >= ? ORDER BY seq", (self._next_seq,)
            )
            for end, received_at, hashes in rows:
                self.remember(received_at, unpack_hashes(hashes))
                self.committed(end)
        for segment in self._segments:
            for bucket in [b for b in segment.keys if self._tables.expired(b, now)]:
                self._recent -= segment.keys.pop(bucket)

    def seen(self, keys: set[int]) -> set[int]:
        """The keys among ``keys`` already seen inside the window."""
        found = keys & self._recent
        rest = keys - found if found else keys
        if not rest:
            return found
        return found | self._tables.seen(self._conn, list(rest))

    def remember(self, received_at_ms: int, keys: Collection[int]) -> None:
        """Remember the keys of one committed log row (call :meth:`committed` after its rows)."""
        segment = self._segments[-1]
        if segment.since is None and keys:
            segment.since = self._clock()
        segment.keys.setdefault(self.bucket(received_at_ms), set()).update(keys)
        self._recent.update(keys)

    def remember_many(self, parts: Collection[tuple[int, Collection[int]]]) -> None:
        for received_at_ms, keys in parts:
            self.remember(received_at_ms, keys)

    def committed(self, next_seq: int) -> None:
        """The log rows added so far end before ``next_seq``; seal the segment once it is full."""
        self._next_seq = next_seq
        self._segments[-1].end = next_seq
        if self._segments[-1].size >= self.segment_keys:
            self._segments.append(_Segment(next_seq))

    def flush_due(self) -> bool:
        """Whether the oldest segment should go to the tables: memory is full (and a segment
        is sealed), or its oldest key is ``flush_seconds`` old."""
        if self.recent_keys >= self.memory_keys and len(self._segments) > 1:
            return True
        since = self._segments[0].since if self._segments else None
        return bool(self.flush_seconds) and since is not None and self._clock() - since >= self.flush_seconds

    def flush(self) -> None:
        """Write the oldest segment into its bucket tables, sorted, and record how far the log
        is flushed (inside a write transaction, after :meth:`sync`). The open segment is
        sealed first if it is the oldest (a flush by age)."""
        conn = self._conn
        if len(self._segments) == 1:
            self._segments.append(_Segment(self._next_seq))
        segment = self._segments[0]
        for bucket, keys in segment.keys.items():
            self._tables.add(conn, bucket, keys)
        # Never backwards: another writer may have flushed further since this one's segments began.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (FLUSHED_KEY, segment.end),
        )

    def flushed(self) -> None:
        """The flush transaction committed: the oldest segment is on disk now."""
        segment = self._segments.popleft()
        self._flushed = segment.end
        self._forget(segment)

    def _forget(self, segment: _Segment) -> None:
        """A segment's keys are in the tables now. (A key is in one segment only: once in
        memory, it is a duplicate and never added again.)"""
        for keys in segment.keys.values():
            self._recent -= keys

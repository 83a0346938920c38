"""The cold part of the SQLite log: blocks of old log rows, compressed together with zstd.

The writer appends rows to ``log`` (``_log.py``) and never looks at blocks. In the
background the ``retention`` consumer moves the oldest rows, a block of at least
``BLOCK_EVENTS`` events at a time, into one row of ``log_blocks``: it reads and compresses
them outside any write transaction (:func:`plan`), then one short transaction inserts the
block and deletes the rows (:func:`apply`), so a crash leaves either the rows or the
block, never both and never neither. Events keep their seqs; readers (``_log.read``) see the same
events in the same order whichever part holds them.

Retention drops whole blocks, oldest first: one ``DELETE`` of one row, whose pages then go
back to the OS (``PRAGMA incremental_vacuum``), never row-by-row deletes of events.

Compressed together, thousands of similar JSON events share their keys, names and values:
zstd finds the repeats across the whole block, which per-event compression cannot.

Two rows are never compacted: the newest (the writer reads the next seq from it) and any
row of the hot tail (``hot_events``), which consumers are still reading. The dedup keys
of a row go with it only once they are safe elsewhere (the writer rebuilds its memory from
the hot rows only): in the bucket tables, flushed there by the writer, or expired; a row
that retention must drop sooner has its keys written there in the same transaction.
"""

from __future__ import annotations

import sqlite3
import struct
import sys
from array import array
from collections.abc import Callable
from typing import NamedTuple

import msgspec
import zstandard

from trackyard.storage.sqlite._dedup import FLUSHED_KEY, BucketTables, unpack_hashes

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_blocks (
    seq INTEGER PRIMARY KEY,             -- the seq of the block's first event
    n INTEGER NOT NULL,                  -- its events: seq .. seq + n - 1, dense
    first_received_at INTEGER NOT NULL,  -- epoch ms of its oldest and newest rows
    last_received_at INTEGER NOT NULL,
    json_bytes INTEGER NOT NULL,         -- the events' canonical JSON, uncompressed
    data BLOB NOT NULL                   -- one zstd frame, see encode()
)"""

#: Events a block holds at least (a block ends with the row that reaches this).
BLOCK_EVENTS = 4096
#: ... and at most this much JSON: a reader decompresses a whole block for one event.
_MAX_BLOCK_JSON = 8 * 1024 * 1024
#: zstd's level: 3 is its default; higher levels gained little on event JSON and cost CPU.
LEVEL = 3
#: Rows at the head of the log that compaction leaves alone: consumers read them now.
HOT_EVENTS = 16_384

#: A log row as compaction reads it, and as a block gives it back to readers.
_ROW_COLUMNS = "seq, n, source_id, received_at, types, sizes, hashes, body"
DecodedRow = tuple[int, int, str, bytes, bytes]  # seq, source_id, types, sizes, body


class Block(NamedTuple):
    seq: int
    n: int
    last_received_ms: int
    stored_bytes: int


def unpack_sizes(blob: bytes) -> array[int]:
    """A row's ``sizes`` column: each event's JSON length."""
    sizes = array("I")
    sizes.frombytes(blob)
    if sys.byteorder == "big":  # the file format is little-endian everywhere
        sizes.byteswap()
    return sizes


def encode(rows: list[tuple[int, int, int, int, str, bytes, bytes, bytes]]) -> tuple[bytes, int]:
    """One zstd frame for ``rows`` (``_ROW_COLUMNS``), and the JSON bytes they hold.

    The frame holds a little-endian uint32 length, the rows' columns as msgpack (the
    hashes left out: the dedup tables keep them) and then every body, concatenated, so
    that JSON sits next to JSON for the compressor.
    """
    columns = msgspec.msgpack.encode([row[:6] for row in rows])
    bodies = b"".join(row[7] for row in rows)
    payload = struct.pack("<I", len(columns)) + columns + bodies
    return zstandard.ZstdCompressor(level=LEVEL).compress(payload), len(bodies)


def decode(data: bytes) -> list[DecodedRow]:
    """The rows of a block, as ``_log`` reads rows of ``log``."""
    payload = zstandard.ZstdDecompressor().decompress(data)
    (length,) = struct.unpack_from("<I", payload)
    columns = msgspec.msgpack.decode(payload[4 : 4 + length])
    view = memoryview(payload)
    offset = 4 + length
    rows: list[DecodedRow] = []
    for seq, _n, source_id, _received_at, types, sizes in columns:
        size = sum(unpack_sizes(sizes))
        rows.append((seq, source_id, types, sizes, bytes(view[offset : offset + size])))
        offset += size
    return rows


class BlockCache:
    """The last blocks a reader decoded: a consumer reads a block in several pages.

    Blocks never change once written (a dropped block's seqs are never reused), so a
    cached block never goes stale.
    """

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._blocks: dict[int, list[DecodedRow]] = {}

    def rows(self, seq: int, load: Callable[[], bytes]) -> list[DecodedRow]:
        rows = self._blocks.get(seq)
        if rows is None:
            rows = decode(load())
            if len(self._blocks) >= self._size:
                del self._blocks[next(iter(self._blocks))]
            self._blocks[seq] = rows
        return rows


class Plan(NamedTuple):
    """A block made from rows read earlier, to be written if the rows are still there."""

    rows: list[tuple[int, int, int, int, str, bytes, bytes, bytes]]
    events: int
    json_bytes: int
    data: bytes


def plan(
    conn: sqlite3.Connection,
    window_seconds: int,
    now_ms: int,
    *,
    force: bool = False,
    received_before_ms: int | None = None,
) -> Plan | None:
    """The next block, read and compressed outside any write transaction (``None``: none due).

    Without ``force`` only a full block is made, of rows outside the hot tail; with it
    (retention that must drop old rows) a partial one too, of any row but the newest, and
    of rows received before ``received_before_ms`` only: a block then holds old rows alone,
    so that retention by age can drop it whole. Compressing is the slow part: done here,
    it never holds the write lock that the ingest writer waits for.

    Without ``force``, a row qualifies only once its dedup keys are flushed to the bucket
    tables by the writer (or have expired): writing them here, one random insert each,
    would hold the write lock for tens of milliseconds a block. Retention's forced blocks
    write the keys of the rows they take (:func:`apply`); retention is rare.
    """
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (FLUSHED_KEY,)).fetchone()
    flushed = 1 if found is None else int(found[0])
    buckets = BucketTables(window_seconds)
    now = now_ms / 1000
    newest = conn.execute("SELECT seq, seq + n FROM log ORDER BY seq DESC LIMIT 1").fetchone()
    if newest is None:
        return None
    newest_seq, next_seq = newest
    limit = newest_seq if force else min(newest_seq, next_seq - HOT_EVENTS)
    rows = []
    events = json_bytes = 0
    cursor = conn.execute(f"SELECT {_ROW_COLUMNS} FROM log WHERE seq < ? ORDER BY seq", (limit,))
    for row in cursor:
        if not force and (row[0] + row[1] > limit):
            break  # the row reaches into the hot tail
        if not force and row[0] + row[1] > flushed and not buckets.expired(buckets.bucket(row[3]), now):
            break  # its keys are only in the writers' memory and in this row
        if received_before_ms is not None and row[3] >= received_before_ms:
            break
        rows.append(row)
        events += row[1]
        json_bytes += len(row[7])
        if events >= BLOCK_EVENTS or json_bytes >= _MAX_BLOCK_JSON:
            break
    cursor.close()
    if not rows or (events < BLOCK_EVENTS and json_bytes < _MAX_BLOCK_JSON and not force):
        return None
    data, _ = encode(rows)
    return Plan(rows, events, json_bytes, data)


def apply(conn: sqlite3.Connection, planned: Plan, window_seconds: int, now_ms: int) -> int:
    """Write the block and delete its rows (inside a write transaction); the events moved.

    Log rows never change, so the rows are still as read if they are all still there; if
    another compactor moved them meanwhile, nothing is written (0).
    """
    rows = planned.rows
    first, last = rows[0][0], rows[-1][0]
    count, events = conn.execute(
        "SELECT count(*), coalesce(sum(n), 0) FROM log WHERE seq >= ? AND seq <= ?", (first, last)
    ).fetchone()
    if (count, events) != (len(rows), planned.events):
        return 0
    _keep_keys(conn, rows, window_seconds, now_ms)
    received = [row[3] for row in rows]
    conn.execute(
        "INSERT INTO log_blocks (seq, n, first_received_at, last_received_at, json_bytes, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (first, planned.events, min(received), max(received), planned.json_bytes, planned.data),
    )
    conn.execute("DELETE FROM log WHERE seq >= ? AND seq <= ?", (first, last))
    return int(planned.events)


def _keep_keys(
    conn: sqlite3.Connection,
    rows: list[tuple[int, int, int, int, str, bytes, bytes, bytes]],
    window_seconds: int,
    now_ms: int,
) -> None:
    """Write the dedup keys of rows not flushed yet into their bucket tables (live buckets only)."""
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (FLUSHED_KEY,)).fetchone()
    flushed = 1 if found is None else int(found[0])
    buckets = BucketTables(window_seconds)
    by_bucket: dict[int, list[int]] = {}
    for seq, n, _source, received_at, _types, _sizes, hashes, _body in rows:
        bucket = buckets.bucket(received_at)
        if seq + n <= flushed or buckets.expired(bucket, now_ms / 1000):
            continue  # in the tables already, or no longer needed by the window
        by_bucket.setdefault(bucket, []).extend(unpack_hashes(hashes))
    for bucket, keys in by_bucket.items():
        buckets.add(conn, bucket, keys)


def oldest_block(conn: sqlite3.Connection) -> Block | None:
    row = conn.execute(
        "SELECT seq, n, last_received_at, length(data) FROM log_blocks ORDER BY seq LIMIT 1"
    ).fetchone()
    return None if row is None else Block(*row)


def drop_block(conn: sqlite3.Connection, seq: int) -> None:
    """Drop the block starting at ``seq`` (inside a write transaction)."""
    conn.execute("DELETE FROM log_blocks WHERE seq = ?", (seq,))

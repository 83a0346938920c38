"""The event log's layout in SQLite: one row per request, not per event.

A row holds the canonical JSON of a request's new events, concatenated, with their sizes,
types and dedup hashes alongside. Appending a batch of 100 events is then one sequential
insert (the body spills onto overflow pages written in order) instead of 100 B-tree
inserts, and the fsync'd bytes are little more than the JSON itself.

Events keep dense seqs: a row's ``seq`` is the seq of its first event, its events are
``seq .. seq + n - 1``, and the next row starts at ``seq + n``. Cursors, lag (head minus
cursor) and counts therefore mean what they meant with one row per event.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from array import array
from collections.abc import Iterator, Sequence

from trackyard.storage.base import EventRecord, StoredEvent, dedup_key
from trackyard.storage.sqlite._blocks import SCHEMA as _BLOCKS_SCHEMA
from trackyard.storage.sqlite._blocks import BlockCache, DecodedRow, unpack_sizes
from trackyard.storage.sqlite._dedup import FLUSHED_KEY, pack_hashes

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,     -- the seq of the row's first event
    n INTEGER NOT NULL,          -- how many events the row holds
    source_id INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    types TEXT NOT NULL,         -- one letter per event, see TYPE_LETTERS
    sizes BLOB NOT NULL,         -- n little-endian uint32: each event's JSON length
    hashes BLOB NOT NULL,        -- n little-endian int64: each event's dedup key hash
    body BLOB NOT NULL           -- the n events' canonical JSON, concatenated
);
-- Small named counters, such as how far dedup keys are flushed (see _dedup.py).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
SCHEMA += _BLOCKS_SCHEMA + ";\n"

TYPE_LETTERS = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}
_LETTER_TYPES = {letter: kind for kind, letter in TYPE_LETTERS.items()}

#: The seq the next row gets, and the seq dedup keys are flushed up to (1 on a new log).
HEAD_SQL = (
    "SELECT coalesce((SELECT seq + n FROM log ORDER BY seq DESC LIMIT 1), 1),"
    f" coalesce((SELECT value FROM meta WHERE key = '{FLUSHED_KEY}'), 1)"
)
#: The row holding event ``?`` (or the first one after it) and every later row.
_FROM_SQL = (
    "SELECT seq, source_id, types, sizes, body FROM log"
    " WHERE seq >= coalesce((SELECT max(seq) FROM log WHERE seq <= ?), 0)"
)
#: A page of the blocks holding events from ``?`` on (the first ``?`` twice).
_BLOCKS_SQL = (
    "SELECT seq FROM log_blocks"
    " WHERE seq >= coalesce((SELECT max(seq) FROM log_blocks WHERE seq <= ?), 0) AND seq + n > ?"
    " ORDER BY seq LIMIT 8"
)

Row = tuple[int, int, int, int, str, bytes, bytes, bytes]


def pack(seq: int, events: Sequence[EventRecord], hashes: list[int]) -> Row:
    """The log row for ``events`` (one source, one receipt), starting at ``seq``."""
    sizes = array("I", [len(e.body) for e in events])
    if sys.byteorder == "big":
        sizes.byteswap()
    return (
        seq,
        len(events),
        events[0].source_id,
        events[0].received_at_ms,
        "".join([TYPE_LETTERS[e.type] for e in events]),
        sizes.tobytes(),
        pack_hashes(hashes),
        b"".join([e.body for e in events]),
    )


def read(
    conn: sqlite3.Connection,
    after: int,
    limit: int,
    source_id: int | None,
    type: str | None,
    cache: BlockCache | None = None,
) -> list[StoredEvent]:
    """Up to ``limit`` events with ``seq > after``, oldest first, optionally of one source or type.

    The compacted blocks first, then the rows of the hot part, in one read transaction:
    compaction moves rows into a block in one commit, so the snapshot sees each event once.
    """
    letter = None
    if type is not None:
        letter = TYPE_LETTERS.get(type)
        if letter is None:
            return []
    events: list[StoredEvent] = []
    conn.execute("BEGIN")
    try:
        for row in _block_rows(conn, after, cache or BlockCache()):
            if source_id is not None and row[1] != source_id:
                continue
            if _collect(events, row, after, letter, limit):
                return events
        sql = _FROM_SQL
        params: list[object] = [after + 1]
        if source_id is not None:
            sql += " AND source_id = ?"
            params.append(source_id)
        if letter is not None:
            sql += " AND instr(types, ?) > 0"
            params.append(letter)
        rows = conn.execute(sql + " ORDER BY seq", params)
        try:
            for row in rows:
                if _collect(events, row, after, letter, limit):
                    return events
        finally:
            rows.close()
        return events
    finally:
        conn.execute("COMMIT")


def _collect(events: list[StoredEvent], row: DecodedRow, after: int, letter: str | None, limit: int) -> bool:
    """Add the row's events after ``after`` (of type ``letter``); whether ``limit`` is reached."""
    if letter is not None and letter not in row[2]:
        return False
    for event in _unpack(row, after, letter):
        events.append(event)
        if len(events) == limit:
            return True
    return False


def _block_rows(conn: sqlite3.Connection, after: int, cache: BlockCache) -> Iterator[DecodedRow]:
    """The rows of the blocks that hold events after ``after``, oldest first."""
    start = after + 1
    while True:
        page = [seq for (seq,) in conn.execute(_BLOCKS_SQL, (start, start)).fetchall()]
        if not page:
            return
        for seq in page:
            rows = cache.rows(seq, functools.partial(_block_data, conn, seq))
            yield from rows
            last = rows[-1]
            start = last[0] + len(last[2])  # the seq after the block's last event


def _block_data(conn: sqlite3.Connection, seq: int) -> bytes:
    (data,) = conn.execute("SELECT data FROM log_blocks WHERE seq = ?", (seq,)).fetchone()
    return bytes(data)


def bodies(conn: sqlite3.Connection) -> Iterator[bytes]:
    """Every event's JSON in the log, oldest first (for checks that read the file directly)."""
    return (event.body for event in read(conn, 0, sys.maxsize, None, None))


def _unpack(row: DecodedRow, after: int, letter: str | None) -> Iterator[StoredEvent]:
    seq, source_id, types, sizes_blob, body = row
    sizes = unpack_sizes(sizes_blob)
    view = memoryview(body)
    offset = 0
    for index, size in enumerate(sizes):
        event_seq = seq + index
        start, offset = offset, offset + size
        if event_seq <= after or (letter is not None and types[index] != letter):
            continue
        yield StoredEvent(event_seq, source_id, _LETTER_TYPES[types[index]], bytes(view[start:offset]))


def migrate_events_table(conn: sqlite3.Connection) -> None:
    """Move schema 2's ``events`` table (one row per event) into the log, inside a transaction.

    Seqs are kept, so consumers' cursors stay valid, and the moved keys are marked as flushed:
    schema 2 already wrote them into the dedup tables.
    """
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() is None:
        return
    rows = conn.execute("SELECT seq, source_id, message_id, type, received_at, body FROM events ORDER BY seq")
    while page := rows.fetchmany(5000):
        conn.executemany(
            "INSERT INTO log (seq, n, source_id, received_at, types, sizes, hashes, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                pack(
                    seq,
                    [EventRecord(source_id, message_id, kind, received_at, body)],
                    [dedup_key(source_id, message_id)],
                )
                for seq, source_id, message_id, kind, received_at, body in page
            ],
        )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, (SELECT coalesce(max(seq + n), 1) FROM log))",
        (FLUSHED_KEY,),
    )
    conn.execute("DROP TABLE events")

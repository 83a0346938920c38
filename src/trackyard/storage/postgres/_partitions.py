"""The PostgreSQL log's partitions: ``events`` is partitioned by range of ``seq``.

Each partition holds ``Settings.log_partition_events`` consecutive seqs (1,000,000 by
default) and is named ``events_p<first seq>``. Retention drops the oldest one whole with
``DROP TABLE`` (``maintenance.py``): no dead rows for ``VACUUM``, its files go back to the
OS at once.

The writer creates partitions ahead of itself, inside its append transaction and so under
``LOG_LOCK``: two nodes never race to create the same one, and the next partition exists
before the first event that needs it. A new partition is created as a plain empty table
and then attached, because ``ATTACH PARTITION`` takes only a ``SHARE UPDATE EXCLUSIVE``
lock on ``events`` (``CREATE TABLE ... PARTITION OF`` would take ``ACCESS EXCLUSIVE`` and
wait for every reader).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import psycopg

#: The partitioned log table (its partitions get the indexes when they are attached).
EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    seq bigint NOT NULL,
    source_id bigint NOT NULL,
    type text NOT NULL,
    received_at bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);
CREATE INDEX IF NOT EXISTS events_source ON events (source_id, seq);
"""

_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


class Partition(NamedTuple):
    name: str
    #: Its seqs: ``lower <= seq < upper``.
    lower: int
    upper: int


def partitions(conn: psycopg.Connection[Any]) -> list[Partition]:
    """The log's partitions, oldest first."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match is None:  # not one of ours (a DEFAULT partition someone added): never touched
            continue
        found.append(Partition(name, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda part: part.lower)


def name_of(lower: int) -> str:
    return f"events_p{lower}"


def ensure(conn: psycopg.Connection[Any], first: int, last: int, width: int, covered: int) -> int:
    """Make sure partitions hold seqs ``first..last`` and one partition beyond; the seq the
    partitions now reach (exclusive). Under ``LOG_LOCK``, in the caller's transaction.

    ``covered`` is what the caller knew they reached: partitions are never removed from
    the top, so when it is enough the catalog is not even read.
    """
    width = max(width, 1)
    if covered > last + width:
        return covered
    existing = partitions(conn)
    upper = existing[-1].upper if existing else first
    while upper <= last + width:
        lower, upper = upper, upper + width
        name = name_of(lower)
        conn.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS)".encode())
        _attach(conn, name, lower, upper)
    return upper


def _attach(conn: psycopg.Connection[Any], name: str, lower: int, upper: int) -> None:
    conn.execute(
        f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})".encode()
    )


def partition_existing(conn: psycopg.Connection[Any]) -> None:
    """Schema version 1 to 2: turn the plain ``events`` table into the first partition of a
    partitioned one, in the caller's transaction (which holds the schema lock).

    The old table is attached as it is rather than copied: a copy would write the whole
    log again and need its size in free disk while it runs. A ``CHECK`` constraint of its
    range, added first, lets ``ATTACH PARTITION`` skip its own validation; adding it reads
    the table once (no rewrite) under the lock. Its indexes become the partition's.
    """
    conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    row = conn.execute("SELECT min(seq), max(seq) FROM events").fetchone()
    if row is None or row[0] is None:  # empty: nothing to keep
        conn.execute("DROP TABLE events")
        conn.execute(EVENTS_TABLE.encode())
        return
    lower, upper = int(row[0]), int(row[1]) + 1
    name = name_of(lower)
    conn.execute(f"ALTER TABLE events RENAME TO {name}".encode())
    # Index names are the schema's: the partitioned table's take the old ones'.
    conn.execute(f"ALTER INDEX events_pkey RENAME TO {name}_pkey".encode())
    conn.execute(f"ALTER INDEX IF EXISTS events_source RENAME TO {name}_source".encode())
    conn.execute(
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (seq >= {lower} AND seq < {upper})".encode()
    )
    conn.execute(EVENTS_TABLE.encode())
    conn.execute(
        f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ({upper})".encode()
    )
    # The partition's own bound says the same from now on.
    conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range".encode())

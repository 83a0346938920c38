"""The PostgreSQL backend's :class:`~trackyard.storage.base.LogMaintenance`: retention by
dropping whole partitions of ``events``, rejects pruned by their own retention, and the
bytes each part takes.

**Parts** are the log's partitions (``_partitions.py``), aged by their newest event's
``received_at``. Dropping one is ``DROP TABLE`` of it: no row is deleted one by one and its
files go back to the OS at once. The partition holding the newest event is never a part
(as on SQLite and JetStream, the head stays), so seqs go on from where they were.

**Compaction** does not apply: PostgreSQL keeps each body as it was given (TOAST
compresses only values over about 2 kB). ``compact`` moves nothing.

The same class serves PostgreSQL *state* under a JetStream log: there it prunes the
rejects and reports the state's tables, and the log's methods are not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from trackyard.storage.base import LogExtent, LogPart
from trackyard.storage.postgres import _partitions
from trackyard.storage.postgres._db import Pool
from trackyard.storage.sqlite.maintenance import file_usage

#: Rejects deleted per transaction.
_REJECTS_PER_STEP = 5000
#: How long a drop waits for ``events``' lock (readers finishing) before it gives up until
#: the next pass: appends queue behind a waiting ``DROP TABLE``, so never for long.
_DROP_LOCK_TIMEOUT = "2s"
#: Tables by part of ``disk_usage``; the log's partitions are ``log``, the rest ``other``.
_PARTS = {
    "dedup": ("dedup_keys",),
    "rejects": ("rejects",),
    "profiles": (
        "profiles",
        "identities",
        "profile_events",
        "trait_history",
        "memberships",
        "merges",
        "profile_meta",
    ),
    "consumers": (
        "cursors",
        "dead_letters",
        "destinations",
        "delivery_status",
        "delivery_counts",
        "skipped",
        "in_retry",
        "parked",
    ),
}
_PART_OF = {table: part for part, tables in _PARTS.items() for table in tables}


class PGMaintenance:
    """Over the database with the log and the rejects (``url``), and the state's database
    too (``state_url``) when it is another one, for its bytes."""

    def __init__(self, url: str, data_dir: Path, state_url: str | None = None) -> None:
        self._pool = Pool(url, size=1)
        self._state = Pool(state_url, size=1) if state_url and state_url != url else None
        self._data_dir = data_dir

    def close(self) -> None:
        self._pool.close()
        if self._state is not None:
            self._state.close()

    # -- compaction: none -------------------------------------------------------------

    def compact(self, force: bool = False, received_before_ms: int | None = None) -> int:
        return 0

    def oldest_hot_received_ms(self) -> int | None:
        return None  # nothing waits for a compaction

    # -- retention --------------------------------------------------------------------

    def oldest_part(self) -> LogPart | None:
        with self._pool.connection() as conn:
            head = _head(conn)
            for partition in _partitions.partitions(conn):
                if partition.upper > head:
                    return None  # it holds the newest event (or is ahead of it): it stays
                name = partition.name
                row = conn.execute(
                    f"SELECT (SELECT min(seq) FROM {name}), seq, received_at,"
                    f" pg_total_relation_size('{name}')"
                    f" FROM (SELECT seq, received_at FROM {name} ORDER BY seq DESC LIMIT 1) newest".encode()
                ).fetchone()
                if row is not None:
                    return LogPart(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
        return None

    def drop(self, part: LogPart) -> None:
        """``DROP TABLE`` of the partition that holds ``part`` (gone already: nothing to do).

        Raises ``StoreUnavailable`` when readers keep ``events`` locked past the lock
        timeout: the pass stops there and the next one tries again."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{_DROP_LOCK_TIMEOUT}'".encode())
            for partition in _partitions.partitions(conn):
                if partition.lower <= part.first_seq < partition.upper:
                    if partition.upper > _head(conn):  # never the head's (a part is never that)
                        raise ValueError(f"{partition.name} holds the newest event: it is not a part")
                    conn.execute(f"DROP TABLE {partition.name}".encode())
                    conn.execute("DELETE FROM log_partition_sizes WHERE lower = %s", (partition.lower,))
                    return

    def prune_rejects(self, before_ms: int) -> int:
        """Delete the rejects received before ``before_ms``, a few thousand per transaction."""
        dropped = 0
        while True:
            with self._pool.connection() as conn:
                deleted = conn.execute(
                    "DELETE FROM rejects WHERE seq IN"
                    " (SELECT seq FROM rejects WHERE received_at < %s ORDER BY seq LIMIT %s)",
                    (before_ms, _REJECTS_PER_STEP),
                ).rowcount
            dropped += deleted
            if deleted < _REJECTS_PER_STEP:
                return dropped

    def reclaim(self) -> int:
        # A dropped partition's files are gone already; deleted rejects leave space that
        # autovacuum makes reusable (VACUUM does not shrink a table).
        return 0

    def checkpoint(self) -> int:
        return 0  # PostgreSQL checkpoints and recycles its WAL itself (max_wal_size)

    def returns_space(self) -> bool:
        return True

    def vacuum(self) -> None:
        """Nothing to convert."""

    # -- what there is ------------------------------------------------------------------

    def extent(self) -> LogExtent:
        with self._pool.connection() as conn:
            head = _head(conn)
            oldest = conn.execute("SELECT seq, received_at FROM events ORDER BY seq LIMIT 1").fetchone()
            parts = _partitions.partitions(conn)
            stored = 0
            if parts:
                (stored,) = conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c)), 0) FROM unnest(%s::regclass[]) c",
                    ([p.name for p in parts],),
                ).fetchone() or (0,)
            json_bytes = _json_bytes(conn, parts, head) if oldest is not None else 0
        oldest_seq = 0 if oldest is None else int(oldest[0])
        return LogExtent(
            # Seqs are dense and only whole partitions from the oldest are dropped.
            events=head - oldest_seq + 1 if oldest is not None else 0,
            compacted_events=0,
            blocks=len(parts),
            oldest_seq=oldest_seq,
            oldest_received_ms=None if oldest is None else int(oldest[1]),
            head_seq=head,
            json_bytes=json_bytes,
            stored_bytes=int(stored),
        )

    def disk_usage(self) -> dict[str, int]:
        """Bytes by part: log (the partitions, with their indexes and TOAST), dedup, rejects,
        profiles, consumers, other (sources, counters ...), and the files in the data dir
        (warehouse, and SQLite state's profiles and consumers when the state is there)."""
        usage = dict.fromkeys(("log", "dedup", "rejects", "profiles", "consumers", "other"), 0)
        for pool in (self._pool, self._state):
            if pool is not None:
                with pool.connection() as conn:
                    _add_tables(conn, usage)
        for part, size in file_usage(self._data_dir).items():
            usage[part] = usage.get(part, 0) + size
        return usage


def _head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    return int(row[0]) if row is not None else 0


def _json_bytes(conn: psycopg.Connection[Any], parts: list[_partitions.Partition], head: int) -> int:
    """The bodies' bytes: each full partition's measured once (then kept in
    ``log_partition_sizes``), the one being written estimated from them (or measured, when
    no partition is full yet)."""
    rows = conn.execute("SELECT lower, events, json_bytes FROM log_partition_sizes").fetchall()
    known: dict[int, tuple[int, int]] = {int(lower): (int(n), int(size)) for lower, n, size in rows}
    full = [partition for partition in parts if partition.upper <= head + 1]
    for partition in full:
        if partition.lower not in known:
            measured = _measure(conn, partition.name)
            conn.execute(
                "INSERT INTO log_partition_sizes (lower, events, json_bytes) VALUES (%s, %s, %s)"
                " ON CONFLICT (lower) DO NOTHING",
                (partition.lower, *measured),
            )
            known[partition.lower] = measured
    full_events = sum(known[p.lower][0] for p in full)
    total = sum(known[p.lower][1] for p in full)
    current = next((p for p in parts if p.lower <= head < p.upper), None)
    if current is None or current.upper == head + 1:
        return total
    if not full_events:
        return total + _measure(conn, current.name)[1]
    row = conn.execute(f"SELECT min(seq) FROM {current.name}".encode()).fetchone()
    in_current = head - int(row[0]) + 1 if row is not None and row[0] is not None else 0
    return total + in_current * total // full_events


def _measure(conn: psycopg.Connection[Any], table: str) -> tuple[int, int]:
    """The events in ``table`` and their bodies' bytes (reads every row)."""
    row = conn.execute(
        f"SELECT count(*), coalesce(sum(octet_length(body)), 0) FROM {table}".encode()
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def _add_tables(conn: psycopg.Connection[Any], usage: dict[str, int]) -> None:
    log_tables = {p.name for p in _partitions.partitions(conn)}
    rows = conn.execute(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
    ).fetchall()
    for name, size in rows:
        part = "log" if name in log_tables or name == "events" else _PART_OF.get(name, "other")
        usage[part] += int(size)

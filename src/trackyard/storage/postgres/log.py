"""The event log in PostgreSQL: one row per event in ``events``, appended by group commit.

Each process has one writer thread (``storage/_group_commit.py``) with a connection of its
own. A commit takes everything waiting and, in one transaction:

1. takes the transaction-scoped advisory lock ``LOG_LOCK``, which orders appends from
   every process and node: seqs are given in commit order, so a reader that has seen seq
   ``n`` has seen every event before it, and seqs stay dense (``max(seq) + 1``, no gaps
   as a sequence would leave after a rollback);
2. inserts the events' dedup keys with ``ON CONFLICT``, and keeps only the events whose
   key was new (or older than the window): the check and the insert are one statement
   under the same lock, so a duplicate is caught across nodes and restarts;
3. creates the log's next partitions if these events reach the newest one
   (``_partitions.py``: one partition always waits ahead), inserts the events and the
   request's rejects, and commits.

The requests are answered only after the commit returned: with ``full`` durability
PostgreSQL's ``synchronous_commit`` is on (the commit is flushed to its WAL, and to a
synchronous standby if the server has one); ``process`` turns it off for this session.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from trackyard.config import Settings
from trackyard.errors import StoreUnavailable
from trackyard.storage._group_commit import GroupCommitWriter, Job, writer_stats
from trackyard.storage.base import AppendResult, EventRecord, RejectRecord, StoredEvent, dedup_key
from trackyard.storage.postgres import _partitions
from trackyard.storage.postgres._db import LOG_LOCK, Pool, connect, redact
from trackyard.storage.postgres.state import REMEMBER_NEW_SQL, PGDedup, insert_rejects, read_page

#: Seconds between two deletions of dedup keys older than the window.
_EXPIRE_EVERY = 60.0


class _Writer(GroupCommitWriter):
    def __init__(self, url: str, settings: Settings, dedup: PGDedup) -> None:
        super().__init__(settings)
        self._url = url
        self._settings = settings
        self._dedup = dedup
        self._conn: psycopg.Connection[Any] | None = None
        #: Where the log's partitions reach (exclusive), as last seen: the catalog is read
        #: only when a commit gets near it.
        self._covered = 0
        self._next_expiry = time.monotonic() + _EXPIRE_EVERY

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._url)
            if self._settings.durability == "process":
                self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def stop(self) -> None:
        super().stop()
        if self._conn is not None:
            self._conn.close()

    def _commit(self, jobs: list[Job]) -> list[AppendResult]:
        try:
            return self._transaction(jobs)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL at {redact(self._url)}: {exc}") from None

    def _transaction(self, jobs: list[Job]) -> list[AppendResult]:
        conn = self._connection()
        window_start = int(time.time() * 1000) - self._dedup.window_seconds * 1000
        # Each job's events with their keys, a key's later copies (in the job or the batch) dropped.
        keyed: list[list[tuple[int, EventRecord]]] = []
        first: dict[int, int] = {}
        for event in (e for job in jobs for e in job.events):
            first.setdefault(dedup_key(event.source_id, event.message_id), event.received_at_ms)
        claimed: set[int] = set()
        for job in jobs:
            keys = []
            for event in job.events:
                key = dedup_key(event.source_id, event.message_id)
                if key not in claimed:
                    claimed.add(key)
                    keys.append((key, event))
            keyed.append(keys)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOG_LOCK,))
            new: set[int] = set()
            if first:
                cursor = conn.execute(REMEMBER_NEW_SQL, (list(first), list(first.values()), window_start))
                new = {int(row[0]) for row in cursor.fetchall()}
            (head,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone() or (0,)
            rows: list[tuple[int, int, str, int, bytes]] = []
            results = []
            for job, keys in zip(jobs, keyed, strict=True):
                stored = [event for key, event in keys if key in new]
                for event in stored:
                    head += 1
                    rows.append((head, event.source_id, event.type, event.received_at_ms, event.body))
                results.append(AppendResult(stored=len(stored), duplicates=len(job.events) - len(stored)))
            covered = self._covered
            if rows:
                width = self._settings.log_partition_events
                covered = _partitions.ensure(conn, rows[0][0], head, width, covered)
                _copy(conn, rows)
            insert_rejects(conn, [r for job in jobs for r in job.rejects])
            if any(job.probe for job in jobs):
                conn.execute(
                    "INSERT INTO health (id, probed_at) VALUES (1, %s)"
                    " ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
                    (int(time.time()),),
                )
        self._covered = covered  # only once committed: a rolled-back partition does not exist
        self.commits += 1
        self.written += len(rows)
        return results

    def _between_commits(self) -> None:
        if time.monotonic() < self._next_expiry:
            return
        self._next_expiry = time.monotonic() + _EXPIRE_EVERY
        try:
            self._dedup.expire()
            self.flushes += 1
        except Exception:  # upkeep never stops the writer; the next round retries
            return


def _copy(conn: psycopg.Connection[Any], rows: Sequence[tuple[int, int, str, int, bytes]]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy("COPY events (seq, source_id, type, received_at, body) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


class PGLog:
    """:class:`~trackyard.storage.base.EventLog` in the ``events`` table."""

    def __init__(self, pool: Pool, settings: Settings, *, writer: bool) -> None:
        self._pool = pool
        self._settings = settings
        self._writer: _Writer | None = None
        if writer:
            self._writer = _Writer(pool.url, settings, PGDedup(pool, settings.dedup_window_seconds))
            self._writer.start()

    async def append(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        if self._writer is None:
            raise StoreUnavailable("this store was opened read-only")
        return await self._writer.submit(events, rejects)

    async def ping(self) -> None:
        if self._writer is None:
            raise StoreUnavailable("this store was opened read-only")
        await self._writer.submit((), (), probe=True)

    def saturated(self) -> bool:
        writer = self._writer
        return writer is not None and writer.pending >= self._settings.max_pending_events

    def read_events(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        select = "SELECT seq, source_id, type, body FROM events"
        rows = read_page(self._pool, select, after, limit, source_id=source_id, type=type)
        return [StoredEvent(*row) for row in rows]

    def stats(self) -> dict[str, int]:
        """This process's writer: transactions committed, events written, events waiting, upkeep rounds."""
        return writer_stats(self._writer)

    def head_seq(self) -> int:
        rows = self._pool.execute("SELECT coalesce(max(seq), 0) FROM events")
        return int(rows[0][0])

    def copy_events(self, events: Sequence[tuple[int, int, str, int, bytes]], keys: Sequence[int]) -> None:
        """Insert ``(seq, source_id, type, received_at, body)`` rows as they are, and remember
        their dedup ``keys`` as received now, in one transaction (``trackyard migrate``)."""
        unique = list(dict.fromkeys(keys))
        now = int(time.time() * 1000)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOG_LOCK,))
            if events:
                width = self._settings.log_partition_events
                _partitions.ensure(conn, events[0][0], events[-1][0], width, 0)
                _copy(conn, events)
            conn.execute(
                "INSERT INTO dedup_keys (key, received_at) SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
                " ON CONFLICT (key) DO UPDATE SET received_at = excluded.received_at",
                (unique, [now] * len(unique)),
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None

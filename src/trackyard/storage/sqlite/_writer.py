"""The SQLite store's writer: the one thread per process that writes to the database.

Requests hand it their events and wait; it takes everything that is waiting, writes it in
one transaction and commits once, so concurrent requests share one fsync (group commit,
``storage/_group_commit.py``).
The dedup check (:class:`~trackyard.storage.sqlite._dedup.SQLiteDedup`, injected) and the
insert run in that same transaction, under SQLite's write lock, so they are atomic across
worker processes too.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator

from trackyard.config import Settings
from trackyard.storage._group_commit import GroupCommitWriter, Job
from trackyard.storage.base import AppendResult, EventRecord, dedup_key
from trackyard.storage.sqlite import _log
from trackyard.storage.sqlite._dedup import SQLiteDedup

log = logging.getLogger("trackyard.storage")

#: Seconds without flushing after a flush failed (a full disk): not one logged error a second.
_FLUSH_RETRY_SECONDS = 5.0


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (SQLite's write lock) ... ``COMMIT``; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Writer(GroupCommitWriter):
    """The one thread that writes to the database in this process."""

    def __init__(self, conn: sqlite3.Connection, dedup: SQLiteDedup, settings: Settings) -> None:
        super().__init__(settings)
        self._conn = conn
        #: Bound to ``conn``: its checks and inserts run inside this writer's transactions.
        self._dedup = dedup
        if dedup.flush_seconds:
            # Keys due by age are flushed even when no request comes.
            self.idle_upkeep_seconds = min(1.0, dedup.flush_seconds)
        self._flush_again_at = 0.0

    def _between_commits(self) -> None:
        if time.monotonic() < self._flush_again_at:
            return
        # One segment between two commits while requests wait; all that are due once none do.
        while self._dedup.flush_due() and self._flush() and not self.pending:
            pass

    def _commit(self, jobs: list[Job]) -> list[AppendResult]:
        conn = self._conn
        dedup = self._dedup
        with write_transaction(conn):
            seq = self._catch_up()
            hashes = [[dedup_key(e.source_id, e.message_id) for e in job.events] for job in jobs]
            seen = dedup.seen({h for job_hashes in hashes for h in job_hashes})
            results = []
            rows: list[_log.Row] = []
            added: list[tuple[int, list[int]]] = []
            for job, job_hashes in zip(jobs, hashes, strict=True):
                events: list[EventRecord] = []
                kept: list[int] = []
                for event, h in zip(job.events, job_hashes, strict=True):
                    if h not in seen:
                        seen.add(h)
                        events.append(event)
                        kept.append(h)
                for part, part_hashes in _by_receipt(events, kept):
                    rows.append(_log.pack(seq, part, part_hashes))
                    added.append((part[0].received_at_ms, part_hashes))
                    seq += len(part)
                results.append(AppendResult(stored=len(events), duplicates=len(job.events) - len(events)))
            conn.executemany(
                "INSERT INTO log (seq, n, source_id, received_at, types, sizes, hashes, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO rejects (source_id, received_at, route, code, message, item_index, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.source_id, r.received_at_ms, r.route, r.code, r.message, r.index, r.body)
                    for job in jobs
                    for r in job.rejects
                ],
            )
            if any(job.probe for job in jobs):
                conn.execute(
                    "INSERT OR REPLACE INTO health (id, probed_at) VALUES (1, ?)", (int(time.time()),)
                )
        # Only now: keys of a rolled-back commit must not count as seen.
        for received_at, part_hashes in added:
            dedup.remember(received_at, part_hashes)
        dedup.committed(seq)
        self.commits += 1
        self.written += sum(row[1] for row in rows)
        return results

    def _catch_up(self) -> int:
        """Inside a write transaction: the seq the next log row gets, with the dedup keys in
        memory brought in step with the log (other worker processes write to it too)."""
        next_seq, flushed = self._conn.execute(_log.HEAD_SQL).fetchone()
        self._dedup.sync(next_seq, flushed)
        return int(next_seq)

    def _flush(self) -> bool:
        """Move the oldest segment of dedup keys held in memory into its tables (``_dedup.py``);
        whether one moved."""
        try:
            with write_transaction(self._conn):
                self._catch_up()
                # Catching up may have let go of segments another process just flushed:
                # then what is left may not be due.
                if not self._dedup.flush_due():
                    return False
                self._dedup.flush()
        except Exception:  # nothing may stop the writer thread
            # The keys stay in memory and the log still has them: nothing is lost meanwhile.
            log.exception("flushing dedup keys failed; will retry in %.0f s", _FLUSH_RETRY_SECONDS)
            self._flush_again_at = time.monotonic() + _FLUSH_RETRY_SECONDS
            return False
        self._dedup.flushed()
        self.flushes += 1
        return True


def _by_receipt(
    events: list[EventRecord], hashes: list[int]
) -> Iterator[tuple[list[EventRecord], list[int]]]:
    """Split a request's events into runs of one source and one receipt time: one log row each."""
    start = 0
    for index in range(1, len(events) + 1):
        if index == len(events) or (
            events[index].source_id != events[start].source_id
            or events[index].received_at_ms != events[start].received_at_ms
        ):
            yield events[start:index], hashes[start:index]
            start = index

"""The embedded store: one SQLite database (WAL) under the data dir.

All writes go through one writer thread per process (as in Datasette). Requests hand it
their events and wait; it takes everything that is waiting, writes it in one
transaction and commits once, so concurrent requests share one fsync (group commit).
Worker processes each have a writer; SQLite's write lock (``BEGIN IMMEDIATE``) orders
them, which also makes the dedup check and the insert atomic across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import secrets
import sqlite3
import string
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trackyard.config import Durability, Settings
from trackyard.errors import Overloaded, StoreUnavailable
from trackyard.storage.base import (
    AppendResult,
    EventRecord,
    RejectRecord,
    Source,
    StoredEvent,
    StoredReject,
)
from trackyard.storage.secrets import hash_secret
from trackyard.storage.source_names import check_source_name
from trackyard.storage.sqlite import _log
from trackyard.storage.sqlite._dedup import DedupIndex, key_hash

_SCHEMA_VERSION = 3
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    write_key TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    rate_limit REAL,
    created_at TEXT NOT NULL
);
{_log.SCHEMA}
-- One row rewritten by every readiness probe: a real write, not an empty commit.
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, probed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rejects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    route TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    item_index INTEGER,
    body BLOB NOT NULL
);
"""

log = logging.getLogger("trackyard.storage")
_WRITE_KEY_ALPHABET = string.ascii_letters + string.digits
_SOURCE_COLUMNS = "id, name, write_key, enabled, rate_limit, created_at, secret_hash"
# The ids of removed sources, so that no new source is given one: stored events keep theirs.
# Created when first needed, so that stores made before it need no migration.
_REMOVED_SOURCES = (
    "CREATE TABLE IF NOT EXISTS removed_sources"
    " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, removed_at TEXT NOT NULL)"
)
_NEXT_SOURCE_ID = (
    "(SELECT coalesce(max(id), 0) + 1 FROM (SELECT id FROM sources UNION ALL SELECT id FROM removed_sources))"
)


def generate_write_key() -> str:
    """32 random letters and digits, the shape of a Segment write key."""
    return "".join(secrets.choice(_WRITE_KEY_ALPHABET) for _ in range(32))


def _connect(path: Path, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # In WAL mode FULL fsyncs the log on every commit; NORMAL only at checkpoints,
    # which survives a process crash but not a power loss.
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (SQLite's write lock) ... ``COMMIT``; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _source(row: tuple[int, str, str, int, float | None, str, str | None]) -> Source:
    return Source(
        id=row[0],
        name=row[1],
        write_key=row[2],
        enabled=bool(row[3]),
        rate_limit=row[4],
        created_at=row[5],
        secret_hash=row[6],
    )


class _Job:
    __slots__ = ("events", "future", "probe", "rejects", "size")

    def __init__(
        self,
        events: Sequence[EventRecord],
        rejects: Sequence[RejectRecord],
        future: asyncio.Future[AppendResult] | None = None,
        probe: bool = False,
    ) -> None:
        self.events = events
        self.rejects = rejects
        self.probe = probe
        self.size = len(events) + len(rejects)
        #: Where the request waits; ``None`` when nobody does (the breakdown benchmark).
        self.future = future


Outcome = tuple[asyncio.Future[AppendResult], AppendResult | BaseException]


def _settle(outcomes: list[Outcome]) -> None:
    """In the event loop: wake the requests one commit answered."""
    for future, outcome in outcomes:
        if future.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _Writer(threading.Thread):
    """The one thread that writes to the database in this process."""

    def __init__(self, conn: sqlite3.Connection, settings: Settings) -> None:
        super().__init__(name="trackyard-writer", daemon=True)
        self._conn = conn
        self._dedup = DedupIndex(settings.dedup_window_seconds, settings.dedup_memory_keys)
        self._max_pending = settings.max_pending_events
        self._max_commit = settings.max_commit_events
        self._jobs: deque[_Job] = deque()
        self._pending = 0
        self._stopping = False
        self._cv = threading.Condition()
        #: Transactions committed and events written by this writer, for tests and benchmarks.
        self.commits = 0
        self.written = 0
        self.flushes = 0

    def submit(
        self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord], probe: bool = False
    ) -> asyncio.Future[AppendResult]:
        """Queue a write; the returned future (of the running loop) resolves once it is committed."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        job = _Job(events, rejects, future, probe)
        with self._cv:
            if self._stopping:
                raise StoreUnavailable("the store is shutting down")
            # A job larger than the bound still goes through when nothing else waits.
            if self._pending and self._pending + job.size > self._max_pending:
                raise Overloaded(f"{self._pending} events are waiting to be written")
            self._jobs.append(job)
            self._pending += job.size
            self._cv.notify()
        return future

    @property
    def pending(self) -> int:
        return self._pending

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self.join()

    def run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if not self._jobs:
                    return
                jobs = [self._jobs.popleft()]
                size = jobs[0].size
                while self._jobs and size + self._jobs[0].size <= self._max_commit:
                    job = self._jobs.popleft()
                    jobs.append(job)
                    size += job.size
            outcomes: list[AppendResult | BaseException]
            try:
                outcomes = list(self._commit(jobs))
            except Exception as exc:  # every failure is reported to the waiting requests
                reason = f"{type(exc).__name__}: {exc}"
                outcomes = [StoreUnavailable(reason) for _ in jobs]
            self._wake(jobs, outcomes)
            with self._cv:
                self._pending -= size
            if self._dedup.flush_due():
                self._flush()

    @staticmethod
    def _wake(jobs: list[_Job], outcomes: list[AppendResult | BaseException]) -> None:
        """One hand-off per event loop and commit, not one per request: each costs the loop a wake-up."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future is not None:
                by_loop.setdefault(job.future.get_loop(), []).append((job.future, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)

    def _commit(self, jobs: list[_Job]) -> list[AppendResult]:
        conn = self._conn
        dedup = self._dedup
        now = time.time()
        with _write_transaction(conn):
            seq = self._catch_up(now)
            hashes = [[key_hash((e.source_id, e.message_id)) for e in job.events] for job in jobs]
            seen = dedup.seen(conn, {h for job_hashes in hashes for h in job_hashes}, now)
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
            dedup.add(dedup.bucket(received_at), part_hashes)
        dedup.committed(seq)
        self.commits += 1
        self.written += sum(row[1] for row in rows)
        return results

    def _catch_up(self, now: float) -> int:
        """Inside a write transaction: the seq the next log row gets, with the dedup keys in
        memory brought in step with the log (other worker processes write to it too)."""
        next_seq, flushed = self._conn.execute(_log.HEAD_SQL).fetchone()
        self._dedup.sync(self._conn, next_seq, flushed, now)
        return int(next_seq)

    def _flush(self) -> None:
        """Move the oldest segment of dedup keys held in memory into its tables (``_dedup.py``)."""
        now = time.time()
        try:
            with _write_transaction(self._conn):
                self._catch_up(now)
                self._dedup.flush(self._conn, now)
        except Exception:  # nothing may stop the writer thread
            # The keys stay in memory and the log still has them; the next commit retries.
            log.exception("flushing dedup keys failed; will retry")
            return
        self._dedup.flushed()
        self.flushes += 1


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


class SQLiteStore:
    """The default backend. ``open(..., writer=False)`` gives a reader for the CLI."""

    def __init__(self, settings: Settings, *, writer: bool = True) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = _connect(settings.database_path, settings.durability)
        self._migrate()
        self._version_path = settings.data_dir / "sources.version"
        if not self._version_path.exists():
            self._version_path.write_bytes((0).to_bytes(8, "little"))
        self._version_fd = os.open(self._version_path, os.O_RDWR)
        # Mapped, so the per-request check is a memory read: no syscall, no GIL hand-off.
        self._version_map = mmap.mmap(self._version_fd, 8)
        self._writer: _Writer | None = None
        if writer:
            self._writer = _Writer(_connect(settings.database_path, settings.durability), settings)
            self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self._version_map.close()
        os.close(self._version_fd)
        self._conn.close()

    def _migrate(self) -> None:
        conn = self._conn
        with self._lock:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version >= _SCHEMA_VERSION:
                return
            with _write_transaction(conn):
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                # Schema 2 kept one row per event; each becomes a row of one, seqs unchanged.
                _log.migrate_events_table(conn)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    # -- the log -----------------------------------------------------------------

    async def append(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        if self._writer is None:
            raise StoreUnavailable("this store was opened read-only")
        return await self._writer.submit(events, rejects)

    async def ping(self) -> None:
        # A full disk often still takes a small commit (the WAL reuses its space), while every
        # real batch fails: so the free space is checked too, against the largest request.
        stats = os.statvfs(self.settings.data_dir)
        free = stats.f_bavail * stats.f_frsize
        if free < 2 * self.settings.max_request_bytes:
            raise StoreUnavailable(f"only {free:,} bytes are free on the data dir's disk")
        if self._writer is None:
            raise StoreUnavailable("this store was opened read-only")
        await self._writer.submit((), (), probe=True)

    def read_events(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            return _log.read(self._conn, after, limit, source_id, type)

    def head_seq(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT seq + n - 1 FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        return 0 if row is None else int(row[0])

    def read_rejects(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None
    ) -> list[StoredReject]:
        rows = self._read(
            # Columns in StoredReject's field order: the record's, then seq.
            "SELECT source_id, received_at, route, code, message, item_index, body, seq FROM rejects",
            after,
            limit,
            source_id,
        )
        return [StoredReject(*row) for row in rows]

    def _read(self, select: str, after: int, limit: int, source_id: int | None) -> list[Any]:
        """A page of the rejects after the cursor ``after``, oldest first."""
        sql = f"{select} WHERE seq > ?"
        params: list[object] = [after]
        if source_id is not None:
            sql += " AND source_id = ?"
            params.append(source_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def saturated(self) -> bool:
        """Whether the writer's queue is full: a request would be refused after decoding anyway."""
        writer = self._writer
        return writer is not None and writer.pending >= self.settings.max_pending_events

    def stats(self) -> dict[str, int]:
        """This process's writer: transactions committed, events written, events waiting, dedup flushes."""
        writer = self._writer
        if writer is None:
            return {"commits": 0, "written": 0, "pending": 0, "flushes": 0}
        return {
            "commits": writer.commits,
            "written": writer.written,
            "pending": writer.pending,
            "flushes": writer.flushes,
        }

    def count_events(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT coalesce(sum(n), 0) FROM log").fetchone()
        return int(count)

    # -- sources -----------------------------------------------------------------

    def sources(self) -> list[Source]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY id").fetchall()
        return [_source(row) for row in rows]

    def source_by_name(self, name: str) -> Source | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else _source(row)

    def sources_version(self) -> int:
        # Cheap enough to ask on every request: the page is shared with every process.
        return int.from_bytes(self._version_map[:8], "little")

    def add_source(
        self,
        name: str,
        write_key: str | None = None,
        rate_limit: float | None = None,
        secret: str | None = None,
    ) -> Source:
        check_source_name(name)
        key = write_key or generate_write_key()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._change_sources(
            f"INSERT INTO sources (id, name, write_key, rate_limit, created_at, secret_hash)"
            f" VALUES ({_NEXT_SOURCE_ID}, ?, ?, ?, ?, ?)",
            (name, key, rate_limit, created, None if secret is None else hash_secret(secret)),
        )
        source = self.source_by_name(name)
        assert source is not None
        return source

    def rotate_source(self, name: str, write_key: str | None = None) -> Source:
        self._change_sources(
            "UPDATE sources SET write_key = ? WHERE name = ?", (write_key or generate_write_key(), name)
        )
        return self._existing(name)

    def set_source_enabled(self, name: str, enabled: bool) -> Source:
        self._change_sources("UPDATE sources SET enabled = ? WHERE name = ?", (int(enabled), name))
        return self._existing(name)

    def set_source_secret(self, name: str, secret: str) -> Source:
        self._change_sources("UPDATE sources SET secret_hash = ? WHERE name = ?", (hash_secret(secret), name))
        return self._existing(name)

    def set_source_rate_limit(self, name: str, rate_limit: float | None) -> Source:
        self._change_sources("UPDATE sources SET rate_limit = ? WHERE name = ?", (rate_limit, name))
        return self._existing(name)

    def remove_source(self, name: str) -> Source:
        source = self._existing(name)
        removed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._change_sources(
            "INSERT INTO removed_sources (id, name, removed_at) SELECT id, name, ? FROM sources WHERE id = ?",
            (removed, source.id),
            ("DELETE FROM sources WHERE id = ?", (source.id,)),
        )
        return source

    def _existing(self, name: str) -> Source:
        source = self.source_by_name(name)
        if source is None:
            raise KeyError(name)
        return source

    def _change_sources(
        self, sql: str, params: tuple[object, ...], *more: tuple[str, tuple[object, ...]]
    ) -> None:
        """Run the statement (and ``more`` of them) in one write transaction."""
        with self._lock, _write_transaction(self._conn):
            self._conn.execute(_REMOVED_SOURCES)
            for statement, values in ((sql, params), *more):
                self._conn.execute(statement, values)
        # Servers compare this counter on every request and reload their sources when it moves.
        version = self.sources_version() + 1
        self._version_map[:8] = version.to_bytes(8, "little")

"""The embedded store: one SQLite database (WAL) under the data dir.

All writes go through one writer thread per process (as in Datasette, ``_writer.py``).
Worker processes each have a writer; SQLite's write lock (``BEGIN IMMEDIATE``) orders
them, which also makes the dedup check and the insert atomic across processes.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from trackyard.config import Durability, Settings
from trackyard.errors import StoreUnavailable
from trackyard.storage._group_commit import writer_stats
from trackyard.storage._source_changes import SOURCE_COLUMNS, SourceChanges, Statement
from trackyard.storage.base import (
    AppendResult,
    EventRecord,
    RejectRecord,
    Source,
    SourceExists,
    StoredEvent,
    StoredReject,
    StoreURLError,
)
from trackyard.storage.sqlite import _log
from trackyard.storage.sqlite._blocks import BlockCache
from trackyard.storage.sqlite._dedup import SQLiteDedup
from trackyard.storage.sqlite._writer import Writer, write_transaction

#: The database's file name in the store's directory.
DATABASE_FILENAME = "trackyard.db"

# 4: log_blocks (compacted parts of the log); new files get auto_vacuum=INCREMENTAL.
_SCHEMA_VERSION = 4
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

# The ids of removed sources, so that no new source is given one: stored events keep theirs.
# Created when first needed, so that stores made before it need no migration.
_REMOVED_SOURCES = (
    "CREATE TABLE IF NOT EXISTS removed_sources"
    " (id INTEGER PRIMARY KEY, name TEXT NOT NULL, removed_at TEXT NOT NULL)"
)


#: The store URLs this backend takes, for errors that refuse others.
URL_FORMS = (
    "sqlite: (the default: SQLite files in the data dir) or sqlite:///ABSOLUTE/DIR (SQLite files in DIR)"
)


def store_directory(settings: Settings) -> Path:
    """The directory a ``sqlite:`` store URL names: the data dir unless it gives an absolute path."""
    if not settings.store_url:
        return settings.data_dir
    url = settings.store_url
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        # Not quoted back: a host part may carry a password.
        raise StoreURLError(
            f"TRACKYARD_STORE: a sqlite URL takes no host, query or fragment. Accepted: {URL_FORMS}."
        )
    if not parts.path:
        return settings.data_dir
    if not parts.path.startswith("/"):
        raise StoreURLError(
            f"TRACKYARD_STORE {url!r}: the directory must be absolute (sqlite:///ABSOLUTE/DIR)."
        )
    return Path(unquote(parts.path))


def database_path(directory: Path) -> Path:
    return directory / DATABASE_FILENAME


def connect(path: Path, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # The durability modes as pragmas. In WAL mode FULL fsyncs the log on every commit
    # (durable on disk: ``full``); NORMAL only at checkpoints, which survives a process
    # crash but not a power loss (``process``).
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    # A checkpoint cuts the write-ahead log back to this: compaction's bursts would otherwise
    # leave it at its largest size for good.
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


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


class SQLiteStore(SourceChanges):
    """The default backend: the log, the rejects and the sources in one database.

    Its files are in :func:`store_directory`: the data dir unless the store URL names
    another one. ``writer=False`` gives a reader, as the CLI uses.
    """

    def __init__(self, settings: Settings, *, writer: bool = True) -> None:
        self.settings = settings
        self.directory = store_directory(settings)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = database_path(self.directory)
        self._lock = threading.Lock()
        self._conn = connect(path, settings.durability)
        #: The compacted blocks this reader decoded last (consumers read a block in pages).
        self._blocks = BlockCache()
        self._migrate()
        self._version_path = self.directory / "sources.version"
        if not self._version_path.exists():
            self._version_path.write_bytes((0).to_bytes(8, "little"))
        self._version_fd = os.open(self._version_path, os.O_RDWR)
        # Mapped, so the per-request check is a memory read: no syscall, no GIL hand-off.
        self._version_map = mmap.mmap(self._version_fd, 8)
        self._writer: Writer | None = None
        if writer:
            conn = connect(path, settings.durability)
            dedup = SQLiteDedup(
                conn,
                settings.dedup_window_seconds,
                settings.dedup_memory_keys,
                flush_seconds=settings.dedup_flush_seconds,
            )
            self._writer = Writer(conn, dedup, settings)
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
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                # Only a file without tables can take it: retention then gives dropped
                # blocks' pages back to the OS (older stores: ``trackyard store vacuum``).
                # A VACUUM of the empty file applies it (WAL mode has written the header already).
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("VACUUM")
            with write_transaction(conn):
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

    async def add_rejects(self, rejects: Sequence[RejectRecord]) -> None:
        """Store ``rejects`` alone, durably (a log kept elsewhere hands its rejects here)."""
        await self.append((), rejects)

    async def ping(self) -> None:
        # A full disk often still takes a small commit (the WAL reuses its space), while every
        # real batch fails: so the free space is checked too, against the largest request.
        stats = os.statvfs(self.directory)
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
            return _log.read(self._conn, after, limit, source_id, type, self._blocks)

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
        """This process's writer: transactions committed, events written, events waiting, upkeep rounds."""
        return writer_stats(self._writer)

    def count_events(self) -> int:
        with self._lock:
            (count,) = self._conn.execute(
                "SELECT (SELECT coalesce(sum(n), 0) FROM log) + (SELECT coalesce(sum(n), 0) FROM log_blocks)"
            ).fetchone()
        return int(count)

    # -- sources -----------------------------------------------------------------

    def sources(self) -> list[Source]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {SOURCE_COLUMNS} FROM sources ORDER BY id").fetchall()
        return [_source(row) for row in rows]

    def source_by_name(self, name: str) -> Source | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {SOURCE_COLUMNS} FROM sources WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else _source(row)

    def sources_version(self) -> int:
        # Cheap enough to ask on every request: the page is shared with every process.
        return int.from_bytes(self._version_map[:8], "little")

    def _change_sources(
        self, sql: str, params: tuple[object, ...], *more: Statement, conflict: str = ""
    ) -> None:
        """Run the statement (and ``more`` of them) in one write transaction."""
        try:
            with self._lock, write_transaction(self._conn):
                self._conn.execute(_REMOVED_SOURCES)
                for statement, values in ((sql, params), *more):
                    self._conn.execute(statement, values)
        except sqlite3.IntegrityError:  # a UNIQUE name or write key
            raise SourceExists(conflict) from None
        # Servers compare this counter on every request and reload their sources when it moves.
        version = self.sources_version() + 1
        self._version_map[:8] = version.to_bytes(8, "little")

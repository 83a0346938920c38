"""The default profile store: ``profiles.db`` in the data dir, next to the event log.

A file of its own, so building profiles never takes the event log's write lock. The
consumer's cursor lives in the same database and is committed in the same transaction
as the profiles it produced: after a crash the builder resumes exactly where the last
commit left off, and nothing is applied twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from trackyard.profiles.storage import (
    Changes,
    ProfileState,
    Progress,
)
from trackyard.storage._profile_queries import (
    PROFILE_COLUMNS,
    TABLES,
    ProfileQueries,
    commit_statements,
    profile_from_row,
)

FILENAME = "profiles.db"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    merged_into INTEGER,
    created_seq INTEGER NOT NULL,
    first_seen INTEGER,
    last_seen INTEGER,
    event_count INTEGER NOT NULL,
    uniq BLOB NOT NULL,
    traits BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS profiles_merged ON profiles (merged_into) WHERE merged_into IS NOT NULL;
CREATE TABLE IF NOT EXISTS identities (
    key TEXT PRIMARY KEY,
    profile_id INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_profile ON identities (profile_id);
CREATE TABLE IF NOT EXISTS profile_events (
    profile_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (profile_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trait_history (
    profile_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value BLOB NOT NULL,
    applied INTEGER NOT NULL,
    PRIMARY KEY (profile_id, name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    member_id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    since INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (member_id, account_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_account ON memberships (account_id);
CREATE TABLE IF NOT EXISTS merges (
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    into_id INTEGER NOT NULL,
    from_id INTEGER NOT NULL,
    via TEXT NOT NULL,
    event_type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS merges_into ON merges (into_id);
CREATE INDEX IF NOT EXISTS merges_from ON merges (from_id);
"""
#: Bound parameters per query, under SQLite's smallest default limit.
_CHUNK = 900


def _connect(path: Path, cache_bytes: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # The log is the source of truth and the cursor commits with the profiles, so a
    # commit lost to a power cut is simply rebuilt: NORMAL (fsync at checkpoints) is enough.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    # Settings.profiles_cache_bytes (a negative cache_size is KiB): what is not cached is
    # read back from the OS's page cache, which cost nothing measurable per event.
    conn.execute(f"PRAGMA cache_size=-{max(cache_bytes // 1024, 64)}")
    # Checkpoint often, in small steps (SQLite's default of 1,000 pages): a checkpoint's
    # fsync of up to 64 MB stalled the ingest path's own fsyncs, which share the disk and
    # the ext4 journal, for up to 120 ms (p99 at half rate 29-46 ms instead of 7 ms), and
    # larger checkpoints did not make the consumer measurably faster.
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    return conn


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


#: ``{}`` as a blob, for the traits of a new profile without any.
_EMPTY_BLOB = "x'7b7d'"


class SQLiteProfiles(ProfileQueries):
    """Both protocols over one connection: the writer's transactions and the readers' queries."""

    def __init__(self, data_dir: Path, cache_bytes: int = 8 * 1024 * 1024) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        self._conn = _connect(self.path, cache_bytes)
        self._lock = threading.RLock()
        with self._lock:
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version < _SCHEMA_VERSION:
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
                )

    def close(self) -> None:
        self._conn.close()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- ProfileWriter ---------------------------------------------------------------

    def begin(self) -> Progress:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            return self._progress()
        except BaseException:
            self._lock.release()
            raise

    def _progress(self) -> Progress:
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return Progress(
            cursor=meta.get("cursor", 0), processed=meta.get("processed", 0), next_id=meta.get("next_id", 1)
        )

    def owners(self, keys: Collection[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            found.update(
                self._conn.execute(f"SELECT key, profile_id FROM identities WHERE key IN ({marks})", chunk)
            )
        return found

    def load(self, ids: Collection[int]) -> dict[int, ProfileState]:
        loaded: dict[int, ProfileState] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE id IN ({marks})", chunk
            ):
                loaded[row[0]] = profile_from_row(row)
        return loaded

    def _run(self, sql: str, params: Sequence[Any]) -> int:
        return int(self._conn.execute(sql, params).rowcount)

    def commit(self, changes: Changes) -> None:
        for sql, rows in commit_statements(changes, "meta", _EMPTY_BLOB):
            if rows:
                self._conn.executemany(sql, rows)
        self._conn.execute("COMMIT")  # when it fails, the builder rolls back (and releases the lock)
        self._lock.release()

    def rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        finally:
            self._lock.release()

    def reset(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for table in (*TABLES, "meta"):
                    self._conn.execute(f"DELETE FROM {table}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- ProfileReader ---------------------------------------------------------------

    def progress(self) -> Progress:
        with self._lock:
            return self._progress()

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]:
        with self._lock:
            return self.load(ids)

    def request_rebuild(self) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rebuild', 1)")

    def rebuild_requested(self) -> bool:
        return bool(self._all("SELECT 1 FROM meta WHERE key = 'rebuild'"))

    def snapshot(self) -> dict[str, list[Any]]:
        """Every row of every table, sorted: two builds are equal when their snapshots are."""
        with self._lock:
            tables = {t: sorted(self._conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}
            tables["meta"] = sorted(
                self._conn.execute("SELECT * FROM meta WHERE key != 'rebuild'").fetchall()
            )
            return tables

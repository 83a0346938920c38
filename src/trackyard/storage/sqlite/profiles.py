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

import msgspec

from trackyard.profiles.storage import (
    Changes,
    Identity,
    Membership,
    MergeRecord,
    ProfileState,
    Progress,
    TraitWrite,
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
#: The tables a rebuild empties, in the order a snapshot lists them.
TABLES = ("profiles", "identities", "profile_events", "trait_history", "memberships", "merges")
#: Bound parameters per query, under SQLite's smallest default limit.
_CHUNK = 900
_PROFILE_COLUMNS = "id, kind, merged_into, created_seq, first_seen, last_seen, event_count, uniq, traits"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # The log is the source of truth and the cursor commits with the profiles, so a
    # commit lost to a power cut is simply rebuilt: NORMAL (fsync at checkpoints) is enough.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    # Ids arrive in random order: keep the hot part of the indexes in memory (64 MiB).
    conn.execute("PRAGMA cache_size=-65536")
    # Checkpoint often, in small steps (SQLite's default of 1,000 pages): a checkpoint's
    # fsync of up to 64 MB stalled the ingest path's own fsyncs, which share the disk and
    # the ext4 journal, for up to 120 ms (p99 at half rate 29-46 ms instead of 7 ms), and
    # larger checkpoints did not make the consumer measurably faster.
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    return conn


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _state(row: tuple[Any, ...]) -> ProfileState:
    return ProfileState(
        id=row[0],
        kind=row[1],
        merged_into=row[2],
        created_seq=row[3],
        first_seen=row[4],
        last_seen=row[5],
        event_count=row[6],
        unique=_decode(row[7]),
        traits=_decode(row[8]),
    )


class SQLiteProfiles:
    """Both protocols over one connection: the writer's transactions and the readers' queries."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        self._conn = _connect(self.path)
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
                f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE id IN ({marks})", chunk
            ):
                loaded[row[0]] = _state(row)
        return loaded

    def repoint(self, loser: int, survivor: int) -> None:
        pair = (survivor, loser)
        execute = self._conn.execute
        execute("UPDATE identities SET profile_id = ? WHERE profile_id = ?", pair)
        execute("UPDATE profile_events SET profile_id = ? WHERE profile_id = ?", pair)
        execute("UPDATE trait_history SET profile_id = ? WHERE profile_id = ?", pair)
        execute("UPDATE profiles SET merged_into = ? WHERE merged_into = ?", pair)
        for column in ("member_id", "account_id"):
            # A membership both held keeps the survivor's (older) row.
            execute(f"UPDATE OR IGNORE memberships SET {column} = ? WHERE {column} = ?", pair)
            execute(f"DELETE FROM memberships WHERE {column} = ?", (loser,))

    def join(self, member: int, account: int, since: int, seq: int) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO memberships (member_id, account_id, since, seq) VALUES (?, ?, ?, ?)",
            (member, account, since, seq),
        )

    def leave(self, member: int, account: int) -> bool:
        cursor = self._conn.execute(
            "DELETE FROM memberships WHERE member_id = ? AND account_id = ?", (member, account)
        )
        return cursor.rowcount > 0

    def commit(self, changes: Changes) -> None:
        execute, many = self._conn.execute, self._conn.executemany
        many(
            "INSERT INTO identities (key, profile_id, first_seen, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET profile_id = excluded.profile_id",
            changes.identities,
        )
        many(
            f"INSERT OR REPLACE INTO profiles ({_PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.id,
                    p.kind,
                    p.merged_into,
                    p.created_seq,
                    p.first_seen,
                    p.last_seen,
                    p.event_count,
                    _encode(p.unique) if p.unique else b"{}",
                    _encode(p.traits) if p.traits else b"{}",
                )
                for p in changes.profiles
            ],
        )
        many("INSERT OR IGNORE INTO profile_events (profile_id, seq) VALUES (?, ?)", changes.events)
        many(
            "INSERT INTO trait_history (profile_id, name, ts, seq, value, applied) VALUES (?, ?, ?, ?, ?, ?)",
            changes.history,
        )
        many(
            "INSERT INTO merges (seq, at, action, into_id, from_id, via, event_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            changes.merges,
        )
        progress = changes.progress
        many(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("cursor", progress.cursor), ("processed", progress.processed), ("next_id", progress.next_id)],
        )
        execute("COMMIT")  # when it fails, the builder rolls back (and releases the lock)
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

    def counts(self) -> dict[str, int]:
        (people, accounts, merged) = self._all(
            "SELECT sum(kind = 'p' AND merged_into IS NULL), sum(kind = 'a' AND merged_into IS NULL),"
            " sum(merged_into IS NOT NULL) FROM profiles"
        )[0]
        (merges,) = self._all("SELECT count(*) FROM merges WHERE action = 'merge'")[0]
        return {"people": people or 0, "accounts": accounts or 0, "merged": merged or 0, "merges": merges}

    def resolve_key(self, key: str) -> int | None:
        rows = self._all("SELECT profile_id FROM identities WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def survivor(self, profile_id: int) -> int | None:
        rows = self._all("SELECT id, merged_into FROM profiles WHERE id = ?", (profile_id,))
        if not rows:
            return None
        return int(rows[0][1] if rows[0][1] is not None else rows[0][0])

    def profile(self, profile_id: int) -> ProfileState | None:
        return self.profiles([profile_id]).get(profile_id)

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]:
        with self._lock:
            return self.load(ids)

    def identities(self, profile_id: int) -> list[Identity]:
        rows = self._all(
            "SELECT key, profile_id, first_seen, seq FROM identities WHERE profile_id = ? ORDER BY seq, key",
            (profile_id,),
        )
        return [Identity(*row) for row in rows]

    def trait_history(self, profile_id: int, name: str | None = None) -> list[TraitWrite]:
        sql = "SELECT profile_id, name, ts, seq, value, applied FROM trait_history WHERE profile_id = ?"
        params: list[Any] = [profile_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._all(sql + " ORDER BY name, ts, seq", params)
        return [TraitWrite(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def event_seqs(self, profile_id: int, before: int | None, limit: int) -> list[int]:
        rows = self._all(
            "SELECT seq FROM profile_events WHERE profile_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (profile_id, before if before is not None else 2**63 - 1, limit),
        )
        return [row[0] for row in rows]

    def memberships(self, member_id: int) -> list[Membership]:
        return self._memberships("member_id", member_id)

    def members(self, account_id: int) -> list[Membership]:
        return self._memberships("account_id", account_id)

    def _memberships(self, column: str, profile_id: int) -> list[Membership]:
        rows = self._all(
            f"SELECT member_id, account_id, since, seq FROM memberships WHERE {column} = ? ORDER BY seq",
            (profile_id,),
        )
        return [Membership(*row) for row in rows]

    def merges(self, profile_id: int) -> list[MergeRecord]:
        rows = self._all(
            "SELECT seq, at, action, into_id, from_id, via, event_type FROM merges"
            " WHERE into_id IN (SELECT ?1 UNION SELECT id FROM profiles WHERE merged_into = ?1)"
            " OR from_id IN (SELECT ?1 UNION SELECT id FROM profiles WHERE merged_into = ?1) ORDER BY seq",
            (profile_id,),
        )
        return [MergeRecord(*row) for row in rows]

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

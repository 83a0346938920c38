"""The profile store in PostgreSQL: the same tables as ``profiles.db``, in the state database.

The consumer's cursor (``profile_meta``) is committed in the same transaction as the
profiles it produced, so a batch is never applied twice. Each builder transaction also
takes a transaction-scoped advisory lock: should two builders ever overlap (a lease lost
to a network cut), their batches are serialised and the second sees the first's cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

import psycopg

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
from trackyard.storage.postgres._db import connect

_BUILDER_LOCK = 0x7472_6B79_0003

#: ``{}`` as a blob, for the traits of a new profile without any.
_EMPTY_BLOB = "'{}'::bytea"


class PGProfiles(ProfileQueries):
    """Both protocols over one connection: the writer's transactions and the readers' queries."""

    def __init__(self, url: str) -> None:
        self._conn: psycopg.Connection[Any] = connect(url)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a shared query (``?`` placeholders, ``_profile_queries.py``)."""
        with self._lock:
            return self._conn.execute(sql.replace("?", "%s"), params).fetchall()

    # -- ProfileWriter ---------------------------------------------------------------

    def begin(self) -> Progress:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            return self._progress()
        except BaseException:
            self._abort()
            self._lock.release()
            raise

    def _abort(self) -> None:
        if not self._conn.closed and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")

    def _progress(self) -> Progress:
        meta = dict(self._conn.execute("SELECT key, value FROM profile_meta").fetchall())
        return Progress(
            cursor=meta.get("cursor", 0), processed=meta.get("processed", 0), next_id=meta.get("next_id", 1)
        )

    def owners(self, keys: Collection[str]) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT key, profile_id FROM identities WHERE key = ANY(%s)", (list(keys),)
        ).fetchall()
        return {key: int(profile_id) for key, profile_id in rows}

    def load(self, ids: Collection[int]) -> dict[int, ProfileState]:
        rows = self._conn.execute(
            f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE id = ANY(%s)", (list(ids),)
        ).fetchall()
        return {row[0]: profile_from_row(row) for row in rows}

    def _run(self, sql: str, params: Sequence[Any]) -> int:
        return int(self._conn.execute(sql.replace("?", "%s"), params).rowcount)

    def commit(self, changes: Changes) -> None:
        with self._conn.cursor() as cur:
            for sql, rows in commit_statements(changes, "profile_meta", _EMPTY_BLOB):
                if rows:
                    cur.executemany(sql.replace("?", "%s"), rows)
        self._conn.execute("COMMIT")  # when it fails, the builder rolls back (and releases the lock)
        self._lock.release()

    def rollback(self) -> None:
        try:
            self._abort()
        finally:
            self._lock.release()

    def reset(self) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            for table in (*TABLES, "profile_meta"):
                self._conn.execute(f"DELETE FROM {table}".encode())

    # -- ProfileReader ---------------------------------------------------------------

    def progress(self) -> Progress:
        with self._lock:
            return self._progress()

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]:
        with self._lock:
            return self.load(ids)

    def request_rebuild(self) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO profile_meta (key, value) VALUES ('rebuild', 1) ON CONFLICT (key) DO NOTHING"
            )

    def rebuild_requested(self) -> bool:
        return bool(self._all("SELECT 1 FROM profile_meta WHERE key = 'rebuild'"))

    def load_snapshot(self, tables: dict[str, list[Any]]) -> None:
        """Replace every profile with ``tables`` (another store's :meth:`snapshot`), in one transaction.

        For ``trackyard migrate``: the column order of each table is the same in every backend.
        """
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            for table in (*TABLES, "profile_meta"):
                self._conn.execute(f"DELETE FROM {table}".encode())
            for table, rows in tables.items():
                name = "profile_meta" if table == "meta" else table
                if name not in (*TABLES, "profile_meta"):
                    raise ValueError(f"no profile table {table!r}")
                with self._conn.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN".encode()) as copy:
                    for row in rows:
                        copy.write_row(row)

    def snapshot(self) -> dict[str, list[Any]]:
        """Every row of every table, sorted: two builds are equal when their snapshots are."""
        with self._lock:
            tables = {t: sorted(self._conn.execute(f"SELECT * FROM {t}".encode()).fetchall()) for t in TABLES}
            tables["meta"] = sorted(
                self._conn.execute("SELECT * FROM profile_meta WHERE key != 'rebuild'").fetchall()
            )
            return tables

"""The state in PostgreSQL: sources and their secrets, rejects (read side), cursors, dead
letters and the dedup index, each over the shared :class:`~._db.Pool`.

Several collector nodes share these tables. A node caches its sources and reloads them
when ``sources_version`` moves; it reads that counter from PostgreSQL at most every
``VERSION_POLL_SECONDS`` in a background thread, so a source added on any node is
accepted by every other one within a second, while a request only reads an int.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from trackyard.storage._source_changes import SOURCE_COLUMNS, SourceChanges, Statement
from trackyard.storage.base import (
    DeadLetter,
    RejectRecord,
    Source,
    SourceExists,
    StoredEvent,
    StoredReject,
)
from trackyard.storage.postgres._db import Pool

VERSION_POLL_SECONDS = 0.25


def _now_ms() -> int:
    return int(time.time() * 1000)


class PGSources(SourceChanges):
    """:class:`~trackyard.storage.base.SourceRegistry` in the ``sources`` table."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._version = self._read_version()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._poll_lock = threading.Lock()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()

    def sources(self) -> list[Source]:
        rows = self._pool.execute(f"SELECT {SOURCE_COLUMNS} FROM sources ORDER BY id")
        return [Source(*row) for row in rows]

    def source_by_name(self, name: str) -> Source | None:
        rows = self._pool.execute(f"SELECT {SOURCE_COLUMNS} FROM sources WHERE name = %s", (name,))
        return Source(*rows[0]) if rows else None

    def sources_version(self) -> int:
        # Asked on every request: answered from memory, kept fresh by the poller.
        if self._poller is None:
            with self._poll_lock:
                if self._poller is None:
                    self._poller = threading.Thread(target=self._poll, name="trackyard-sources", daemon=True)
                    self._poller.start()
        return self._version

    def _read_version(self) -> int:
        rows = self._pool.execute("SELECT value FROM counters WHERE name = 'sources_version'")
        return int(rows[0][0]) if rows else 0

    def _poll(self) -> None:
        while not self._stop.wait(VERSION_POLL_SECONDS):
            try:
                self._version = self._read_version()
            except Exception:  # PostgreSQL away for a moment: keep the sources we have
                continue

    def insert_source(self, source: Source) -> bool:
        """Copy ``source`` as it is, id included (``trackyard migrate``); ``False`` if it is there."""
        rows = self._change(
            f"INSERT INTO sources ({SOURCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (
                source.id,
                source.name,
                source.write_key,
                source.enabled,
                source.rate_limit,
                source.created_at,
                source.secret_hash,
            ),
        )
        return bool(rows)

    def _change_sources(
        self, sql: str, params: tuple[object, ...], *more: Statement, conflict: str = ""
    ) -> None:
        self._change(sql, params, *more, conflict=conflict)

    def _change(
        self, sql: str, params: tuple[object, ...], *more: Statement, conflict: str = ""
    ) -> list[Any]:
        """The statements (``?`` placeholders), and the move of ``sources_version``, in one transaction."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                cursor = conn.execute(sql.replace("?", "%s"), params)
                rows = cursor.fetchall() if cursor.description is not None else []
                for statement, values in more:
                    conn.execute(statement.replace("?", "%s"), values)
                # Serialises concurrent changes too: the row lock is held until commit.
                (version,) = conn.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'sources_version' RETURNING value"
                ).fetchone() or (0,)
        except psycopg.errors.UniqueViolation:
            raise SourceExists(conflict) from None
        self._version = int(version)
        return rows


def read_page(pool: Pool, select: str, after: int, limit: int, **equal: object) -> list[Any]:
    """Up to ``limit`` rows of ``select`` with ``seq > after``, oldest first, where each
    column of ``equal`` that is not ``None`` has that value (the cursor readers' query)."""
    sql = f"{select} WHERE seq > %s"
    params: list[object] = [after]
    for column, value in equal.items():
        if value is not None:
            sql += f" AND {column} = %s"
            params.append(value)
    sql += " ORDER BY seq LIMIT %s"
    params.append(limit)
    return pool.execute(sql, params)


class PGRejects:
    """:class:`~trackyard.storage.base.RejectStore` in the ``rejects`` table (written by the log)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def read_rejects(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None
    ) -> list[StoredReject]:
        # Columns in StoredReject's field order: the record's, then seq.
        select = "SELECT source_id, received_at, route, code, message, item_index, body, seq FROM rejects"
        return [
            StoredReject(*row) for row in read_page(self._pool, select, after, limit, source_id=source_id)
        ]

    def add_rejects(self, rejects: Sequence[RejectRecord]) -> None:
        """Keep ``rejects`` (for a log elsewhere, such as JetStream, that does not keep them itself)."""
        with self._pool.connection() as conn, conn.transaction():
            insert_rejects(conn, rejects)


def insert_rejects(conn: psycopg.Connection[Any], rejects: Sequence[RejectRecord]) -> None:
    """Within the caller's transaction."""
    if not rejects:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO rejects (source_id, received_at, route, code, message, item_index, body)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(r.source_id, r.received_at_ms, r.route, r.code, r.message, r.index, r.body) for r in rejects],
        )


class PGCursors:
    """:class:`~trackyard.storage.base.CursorStore` in the ``cursors`` table."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def get(self, consumer: str) -> int:
        rows = self._pool.execute("SELECT cursor FROM cursors WHERE consumer = %s", (consumer,))
        return int(rows[0][0]) if rows else 0

    def commit(self, consumer: str, cursor: int) -> None:
        self._pool.execute(
            "INSERT INTO cursors (consumer, cursor, updated_at_ms) VALUES (%s, %s, %s) "
            "ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor,"
            " updated_at_ms = excluded.updated_at_ms",
            (consumer, cursor, _now_ms()),
        )

    def close(self) -> None:
        """The pool is the backends'."""


class PGDeadLetters:
    """:class:`~trackyard.storage.base.DeadLetters` in the ``dead_letters`` table."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def add(self, consumer: str, event: StoredEvent, reason: str, attempts: int) -> None:
        self._pool.execute(
            "INSERT INTO dead_letters (consumer, seq, source_id, type, body, reason, attempts, failed_at_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (consumer, event.seq, event.source_id, event.type, event.body, reason, attempts, _now_ms()),
        )

    def read(self, consumer: str | None = None, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        columns = "id, consumer, seq, source_id, type, body, reason, attempts, failed_at_ms"
        if consumer is None:
            rows = self._pool.execute(
                f"SELECT {columns} FROM dead_letters WHERE id > %s ORDER BY id LIMIT %s", (after, limit)
            )
        else:
            rows = self._pool.execute(
                f"SELECT {columns} FROM dead_letters WHERE consumer = %s AND id > %s ORDER BY id LIMIT %s",
                (consumer, after, limit),
            )
        return [DeadLetter(*row) for row in rows]

    def count(self, consumer: str) -> int:
        rows = self._pool.execute("SELECT count(*) FROM dead_letters WHERE consumer = %s", (consumer,))
        return int(rows[0][0])

    def prune(self, before_ms: int) -> int:
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM dead_letters WHERE failed_at_ms < %s", (before_ms,)).rowcount

    def close(self) -> None:
        """The pool is the backends'."""


#: Within a transaction: store the keys not yet in the window, return those it stored.
#: A key older than the window counts as unseen and is renewed.
REMEMBER_NEW_SQL = (
    "INSERT INTO dedup_keys (key, received_at) SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
    " ON CONFLICT (key) DO UPDATE SET received_at = excluded.received_at"
    " WHERE dedup_keys.received_at < %s RETURNING key"
)


#: The keys' receipt times are compared here, not in SQL: with ``received_at >= %s`` the
#: planner may pick the ``received_at`` index (statistics taken while the table was still
#: small estimate few recent rows) and scan every key in the window: a lookup that grows
#: with the table, 25 ms at 34,000 keys.
_SEEN_SQL = "SELECT key, received_at FROM dedup_keys WHERE key = ANY(%s)"
_REMEMBER_SQL = (
    "INSERT INTO dedup_keys (key, received_at) SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
    " ON CONFLICT (key) DO UPDATE"
    " SET received_at = greatest(dedup_keys.received_at, excluded.received_at)"
)


def _remember_params(parts: Collection[tuple[int, Collection[int]]]) -> tuple[list[int], list[int]]:
    """The keys and their receipt times, each key once (``ON CONFLICT`` takes a key once per
    statement) at its latest time."""
    latest: dict[int, int] = {}
    for received_at_ms, keys in parts:
        for key in keys:
            latest[key] = max(received_at_ms, latest.get(key, received_at_ms))
    return list(latest), list(latest.values())


class PGDedup:
    """:class:`~trackyard.storage.base.DedupIndex` in the ``dedup_keys`` table.

    For a log kept elsewhere (JetStream); the PostgreSQL log does its check and insert in
    its own append transaction with :data:`REMEMBER_NEW_SQL`.

    The JetStream log opens it on a pool of its own whose connections run :attr:`SESSION`:
    its keys are committed without waiting for the WAL flush (an fsync per request, the
    largest and least steady part of a request's time). Committed, they are visible to
    every node at once, and kept across restarts and any crash of trackyard; only a crash
    of the PostgreSQL server (or its machine) can lose the last keys not yet flushed,
    under a second's worth (``wal_writer_delay`` is 200 ms). The events themselves are
    durable by the stream's quorum ack, not by PostgreSQL, and a lost key only re-opens
    the long window for its event: a copy sent again after JetStream's own window (2
    minutes) would be stored a second time, the case a collector dying between its
    publishes and remembering the keys already has.
    """

    SESSION = "SET synchronous_commit = off"

    def __init__(self, pool: Pool, window_seconds: int) -> None:
        self._pool = pool
        self._window = window_seconds
        self._stop = threading.Event()
        self._expirer: threading.Thread | None = None

    def expire_every(self, seconds: float) -> None:
        """:meth:`expire` every ``seconds`` in a thread of its own until :meth:`close`: for a
        log (JetStream's) that has no writer of its own to do it between commits."""

        def run() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.expire()
                except Exception:  # PostgreSQL away for a moment: the next round retries
                    continue

        self._expirer = threading.Thread(target=run, name="trackyard-dedup-expiry", daemon=True)
        self._expirer.start()

    def close(self) -> None:
        self._stop.set()
        if self._expirer is not None:
            self._expirer.join()

    @property
    def window_seconds(self) -> int:
        return self._window

    def seen(self, keys: set[int]) -> set[int]:
        if not keys:
            return set()
        start = _now_ms() - self._window * 1000
        rows = self._pool.execute(_SEEN_SQL, (list(keys),))
        return {int(key) for key, received_at in rows if received_at >= start}

    def remember(self, received_at_ms: int, keys: Collection[int]) -> None:
        self.remember_many([(received_at_ms, keys)])

    def remember_many(self, parts: Collection[tuple[int, Collection[int]]]) -> None:
        """Several :meth:`remember` calls in one statement."""
        if any(keys for _, keys in parts):
            self._pool.execute(_REMEMBER_SQL, _remember_params(parts))

    def expire(self) -> int:
        """Forget keys older than the window; how many were dropped."""
        with self._pool.connection() as conn:
            cursor = conn.execute(
                "DELETE FROM dedup_keys WHERE received_at < %s", (_now_ms() - self._window * 1000,)
            )
            return cursor.rowcount

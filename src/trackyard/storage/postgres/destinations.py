"""The destination registry in PostgreSQL (``destinations`` and ``delivery_status``).

Keys and secrets are needed in the clear to sign each request, as in ``destinations.db``:
protect the database as you would that file (its role's password, ``pg_hba.conf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from trackyard.storage._destination_tables import DestinationTables, Statement
from trackyard.storage.destinations import (
    DestinationExists,
)
from trackyard.storage.postgres._db import Pool, connect


class PGDestinations(DestinationTables):
    """:class:`~trackyard.storage.destinations.DestinationRegistry` over the state's pool."""

    def __init__(self, pool: Pool, *, owned: bool = False) -> None:
        self._pool = pool
        #: Whether closing this registry closes the pool (when it was opened for it alone).
        self._owned = owned

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._pool.execute(sql.replace("?", "%s"), params)

    def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def _write(self, *statements: Statement, conflict: str = "") -> int:
        try:
            with self._pool.connection() as conn, conn.transaction():
                counts = [conn.execute(sql.replace("?", "%s"), params).rowcount for sql, params in statements]
        except psycopg.errors.UniqueViolation:
            raise DestinationExists(conflict) from None
        return counts[0]

    def close(self) -> None:
        if self._owned:
            self._pool.close()


def any_destination(url: str) -> bool:
    """Whether the database holds a destination, on one short connection (creating nothing)."""
    conn = connect(url)
    try:
        row = conn.execute("SELECT to_regclass('destinations') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return False
        return conn.execute("SELECT 1 FROM destinations LIMIT 1").fetchone() is not None
    finally:
        conn.close()

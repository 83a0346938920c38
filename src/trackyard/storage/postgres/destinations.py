"""The destination registry in PostgreSQL (``destinations`` and ``delivery_status``).

Keys and secrets are needed in the clear to sign each request, as in ``destinations.db``:
protect the database as you would that file (its role's password, ``pg_hba.conf``).
"""

from __future__ import annotations

import time

import psycopg

from trackyard.storage.destinations import (
    COLUMNS,
    Destination,
    DestinationExists,
    NoSuchDestination,
    destination_from_row,
    destination_row,
)
from trackyard.storage.postgres._db import Pool


class PGDestinations:
    """:class:`~trackyard.storage.destinations.DestinationRegistry` over the state's pool."""

    def __init__(self, pool: Pool, *, owned: bool = False) -> None:
        self._pool = pool
        #: Whether closing this registry closes the pool (when it was opened for it alone).
        self._owned = owned

    def destinations(self) -> list[Destination]:
        rows = self._pool.execute(f"SELECT {COLUMNS} FROM destinations ORDER BY name")
        return [destination_from_row(row) for row in rows]

    def get(self, name: str) -> Destination:
        rows = self._pool.execute(f"SELECT {COLUMNS} FROM destinations WHERE name = %s", (name,))
        if not rows:
            raise NoSuchDestination(name)
        return destination_from_row(rows[0])

    def add(self, destination: Destination) -> Destination:
        d = destination
        try:
            self._pool.execute(
                f"INSERT INTO destinations ({COLUMNS}) VALUES ({', '.join(['%s'] * 12)})",
                destination_row(d, int(time.time() * 1000)),
            )
        except psycopg.errors.UniqueViolation:
            raise DestinationExists(d.name) from None
        return self.get(d.name)

    def set_enabled(self, name: str, enabled: bool) -> Destination:
        with self._pool.connection() as conn:
            changed = conn.execute(
                "UPDATE destinations SET enabled = %s WHERE name = %s", (enabled, name)
            ).rowcount
        if not changed:
            raise NoSuchDestination(name)
        return self.get(name)

    def remove(self, name: str) -> Destination:
        destination = self.get(name)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM destinations WHERE name = %s", (name,))
            conn.execute("DELETE FROM delivery_status WHERE name = %s", (name,))
        return destination

    def record(self, name: str, delivered: int, error: str | None = None) -> None:
        at = int(time.time() * 1000) if error is not None else None
        self._pool.execute(
            "INSERT INTO delivery_status AS s (name, delivered, last_error, last_error_at_ms)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
            " delivered = s.delivered + excluded.delivered,"
            " last_error = coalesce(excluded.last_error, s.last_error),"
            " last_error_at_ms = coalesce(excluded.last_error_at_ms, s.last_error_at_ms)",
            (name, delivered, error, at),
        )

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        rows = self._pool.execute(
            "SELECT delivered, last_error, last_error_at_ms FROM delivery_status WHERE name = %s", (name,)
        )
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, None, None)

    def count(self) -> int:
        return int(self._pool.execute("SELECT count(*) FROM destinations")[0][0])

    def close(self) -> None:
        if self._owned:
            self._pool.close()

"""The destination registry's queries, the same SQL in every backend that keeps it in tables.

Written with ``?`` placeholders; each backend runs them with ``_all`` (a query) and
``_write`` (statements in one transaction, a unique violation raised as
``DestinationExists``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from trackyard.storage.destinations import (
    COLUMNS,
    Destination,
    NoSuchDestination,
    destination_from_row,
    destination_row,
)

Statement = tuple[str, tuple[object, ...]]


class DestinationTables:
    """Mixed into a registry: :class:`~trackyard.storage.destinations.DestinationRegistry`'s queries."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _write(self, *statements: Statement, conflict: str = "") -> int:
        """Run ``statements`` in one transaction; the first one's row count."""
        raise NotImplementedError

    def destinations(self) -> list[Destination]:
        return [
            destination_from_row(row)
            for row in self._all(f"SELECT {COLUMNS} FROM destinations ORDER BY name")
        ]

    def get(self, name: str) -> Destination:
        rows = self._all(f"SELECT {COLUMNS} FROM destinations WHERE name = ?", (name,))
        if not rows:
            raise NoSuchDestination(name)
        return destination_from_row(rows[0])

    def add(self, destination: Destination) -> Destination:
        marks = ", ".join(["?"] * len(COLUMNS.split(",")))
        self._write(
            (
                f"INSERT INTO destinations ({COLUMNS}) VALUES ({marks})",
                destination_row(destination, _now_ms()),
            ),
            conflict=destination.name,
        )
        return self.get(destination.name)

    def set_enabled(self, name: str, enabled: bool) -> Destination:
        if not self._write(("UPDATE destinations SET enabled = ? WHERE name = ?", (enabled, name))):
            raise NoSuchDestination(name)
        return self.get(name)

    def remove(self, name: str) -> Destination:
        destination = self.get(name)
        self._write(
            ("DELETE FROM destinations WHERE name = ?", (name,)),
            ("DELETE FROM delivery_status WHERE name = ?", (name,)),
        )
        return destination

    def record(self, name: str, delivered: int, error: str | None = None) -> None:
        """Count ``delivered`` more events to ``name``, and keep ``error`` as its last one.

        Once a request, not once an event: the counts are for ``destinations show``.
        """
        at = _now_ms() if error is not None else None
        self._write(
            (
                "INSERT INTO delivery_status AS s (name, delivered, last_error, last_error_at_ms)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " delivered = s.delivered + excluded.delivered,"
                " last_error = coalesce(excluded.last_error, s.last_error),"
                " last_error_at_ms = coalesce(excluded.last_error_at_ms, s.last_error_at_ms)",
                (name, delivered, error, at),
            )
        )

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms), from :meth:`record`."""
        rows = self._all(
            "SELECT delivered, last_error, last_error_at_ms FROM delivery_status WHERE name = ?", (name,)
        )
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, None, None)


def _now_ms() -> int:
    return int(time.time() * 1000)

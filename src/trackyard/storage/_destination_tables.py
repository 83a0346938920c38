"""The destination registry's queries, the same SQL in every backend that keeps it in tables.

Written with ``?`` placeholders; each backend runs them with ``_all`` (a query), ``_write``
(statements in one transaction, a unique violation raised as ``DestinationExists``) and
``_write_many`` (one statement over many rows, in one transaction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import (
    COLUMNS,
    Destination,
    NoSuchDestination,
    Parked,
    RequestCounts,
    SkippedEvent,
    destination_from_row,
    destination_row,
)

Statement = tuple[str, tuple[object, ...]]
_MARKS = ", ".join(["?"] * len(COLUMNS.split(",")))
_INSERT = f"INSERT INTO destinations ({COLUMNS}) VALUES ({_MARKS})"
_PARKED = "id, seq, source_id, type, body, attempts, first_failed_ms, due_ms, reason"
#: The tables that hold something of a destination besides its definition.
_PER_DESTINATION = ("delivery_status", "delivery_counts", "in_retry", "parked")


class DestinationTables:
    """Mixed into a registry: :class:`~trackyard.storage.destinations.DestinationRegistry`'s queries."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _write(self, *statements: Statement, conflict: str = "") -> int:
        """Run ``statements`` in one transaction; the first one's row count."""
        raise NotImplementedError

    def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run ``sql`` for each of ``rows``, all in one transaction or none."""
        raise NotImplementedError

    def destinations(self) -> list[Destination]:
        rows = self._all(f"SELECT {COLUMNS} FROM destinations ORDER BY name")
        return [destination_from_row(row) for row in rows]

    def get(self, name: str) -> Destination:
        rows = self._all(f"SELECT {COLUMNS} FROM destinations WHERE name = ?", (name,))
        if not rows:
            raise NoSuchDestination(name)
        return destination_from_row(rows[0])

    def add(self, destination: Destination) -> Destination:
        row = destination_row(destination, _now_ms())
        self._write(
            (f"INSERT INTO destinations ({COLUMNS}) VALUES ({_MARKS})", row), conflict=destination.name
        )
        return self.get(destination.name)

    def update(self, destination: Destination) -> Destination:
        created = self.get(destination.name).created_at_ms
        self._write(
            ("DELETE FROM destinations WHERE name = ?", (destination.name,)),
            (
                f"INSERT INTO destinations ({COLUMNS}) VALUES ({_MARKS})",
                destination_row(destination, created),
            ),
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
            *((f"DELETE FROM {table} WHERE name = ?", (name,)) for table in _PER_DESTINATION),
        )
        return destination

    def record(
        self,
        name: str,
        delivered: int,
        error: str | None = None,
        requests: Mapping[str, RequestCounts] | None = None,
    ) -> None:
        """Count ``delivered`` more events to ``name``, keep ``error`` as its last one, and add
        ``requests`` to its counts by status class, in one transaction.

        Once a request outcome or a batch, never once an event: the sink adds up its
        deliveries in memory and records them with the batch (``destinations show``, /metrics).
        """
        at = _now_ms() if error is not None else None
        counts: list[Statement] = [
            (
                "INSERT INTO delivery_counts AS c (name, class, requests, events, retries)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, class) DO UPDATE SET"
                " requests = c.requests + excluded.requests, events = c.events + excluded.events,"
                " retries = c.retries + excluded.retries",
                (name, kind, c.requests, c.events, c.retries),
            )
            for kind, c in (requests or {}).items()
        ]
        self._write(
            (
                "INSERT INTO delivery_status AS s (name, delivered, last_error, last_error_at_ms)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " delivered = s.delivered + excluded.delivered,"
                " last_error = coalesce(excluded.last_error, s.last_error),"
                " last_error_at_ms = coalesce(excluded.last_error_at_ms, s.last_error_at_ms)",
                (name, delivered, error, at),
            ),
            *counts,
        )

    def request_counts(self, name: str) -> dict[str, RequestCounts]:
        rows = self._all(
            "SELECT class, requests, events, retries FROM delivery_counts WHERE name = ? ORDER BY class",
            (name,),
        )
        return {kind: RequestCounts(int(r), int(e), int(t)) for kind, r, e, t in rows}

    def status(self, name: str) -> tuple[int, str | None, int | None]:
        """Events delivered to ``name``, its last error and when (ms), from :meth:`record`."""
        rows = self._all(
            "SELECT delivered, last_error, last_error_at_ms FROM delivery_status WHERE name = ?", (name,)
        )
        return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else (0, None, None)

    def skip(self, name: str, skips: Sequence[tuple[int, str, str]]) -> None:
        at = _now_ms()
        self._write_many(
            "INSERT INTO skipped (name, seq, type, reason, skipped_at_ms) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(name, seq, kind, reason, at) for seq, kind, reason in skips],
        )

    def skipped(self, name: str, after: int = 0, limit: int = 1000) -> list[SkippedEvent]:
        rows = self._all(
            "SELECT seq, type, reason, skipped_at_ms FROM skipped WHERE name = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (name, after, limit),
        )
        return [SkippedEvent(int(seq), kind, reason, int(at)) for seq, kind, reason, at in rows]

    def skip_counts(self, name: str) -> dict[str, int]:
        rows = self._all(
            "SELECT reason, count(*) FROM skipped WHERE name = ? GROUP BY reason ORDER BY count(*) DESC",
            (name,),
        )
        return {reason: int(count) for reason, count in rows}

    def set_retrying(self, name: str, events: int, attempts: int) -> None:
        if events:
            self._write(
                (
                    "INSERT INTO in_retry (name, events, attempts) VALUES (?, ?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET events = excluded.events, attempts = excluded.attempts",
                    (name, events, attempts),
                )
            )
        else:
            self._write(("DELETE FROM in_retry WHERE name = ?", (name,)))

    def retrying(self, name: str) -> tuple[int, int]:
        in_hand = self._all("SELECT events, attempts FROM in_retry WHERE name = ?", (name,))
        parked = self._all("SELECT count(*), coalesce(max(attempts), 0) FROM parked WHERE name = ?", (name,))
        events, attempts = (int(in_hand[0][0]), int(in_hand[0][1])) if in_hand else (0, 0)
        return events + int(parked[0][0]), max(attempts, int(parked[0][1]))

    def park(self, name: str, parked: Sequence[Parked]) -> None:
        self._write_many(
            f"INSERT INTO parked (name, {_PARKED.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (name, p.event.seq, p.event.source_id, p.event.type, p.event.body)
                + (p.attempts, p.first_failed_ms, p.due_ms, p.reason)
                for p in parked
            ],
        )

    def due(self, name: str, now_ms: int, limit: int) -> list[Parked]:
        rows = self._all(
            f"SELECT {_PARKED} FROM parked WHERE name = ? AND due_ms <= ? ORDER BY seq LIMIT ?",
            (name, now_ms, limit),
        )
        return [Parked(row[0], StoredEvent(row[1], row[2], row[3], bytes(row[4])), *row[5:]) for row in rows]

    def reschedule(self, parked: Parked) -> None:
        self._write(
            (
                "UPDATE parked SET attempts = ?, due_ms = ?, reason = ? WHERE id = ?",
                (parked.attempts, parked.due_ms, parked.reason, parked.id),
            )
        )

    def unpark(self, ids: Sequence[int]) -> None:
        self._write_many("DELETE FROM parked WHERE id = ?", [(i,) for i in ids])


def _now_ms() -> int:
    return int(time.time() * 1000)

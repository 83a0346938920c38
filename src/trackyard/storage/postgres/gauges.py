"""The store gauges' shared copy in the ``--state`` database: one row, for every collector node.

With PostgreSQL state the ``metrics`` consumer often runs on another machine than the
collectors (``serve --role ingest``), so besides its file it writes its reading here, and
each collector's workers fetch that row (a primary-key read) at most once an interval
(``trackyard.metrics.gauges``).
"""

from __future__ import annotations

from trackyard.storage.postgres._db import Pool

_ID = 1


class SharedGauges:
    """The row, over a connection of its own (opened on first use)."""

    def __init__(self, url: str) -> None:
        self._pool = Pool(url, size=1)  # the table is made with the schema (version 3)

    def write(self, text: bytes, written_at: float) -> None:
        self._pool.execute(
            "INSERT INTO store_gauges (id, text, written_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET text = excluded.text, written_at = excluded.written_at",
            (_ID, text, written_at),
        )

    def read(self) -> tuple[bytes, float] | None:
        """The last reading and when it was written (the writer's clock), or ``None``."""
        rows = self._pool.execute("SELECT text, written_at FROM store_gauges WHERE id = %s", (_ID,))
        return (bytes(rows[0][0]), float(rows[0][1])) if rows else None

    def close(self) -> None:
        self._pool.close()

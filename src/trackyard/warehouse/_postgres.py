"""PostgreSQL as the warehouse, by DSN: COPY into a staging table, then merge on id (RudderStack's way)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from trackyard.warehouse._backend import LOADS_TABLE, TABLES_TABLE, Backend, quote
from trackyard.warehouse.schema import ColumnType

_SQL_TYPES: Final[dict[ColumnType, str]] = {
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "text": "text",
}
_FROM_SQL: Final[dict[str, ColumnType]] = {
    "bigint": "bigint",
    "double precision": "double",
    "boolean": "boolean",
    "timestamp with time zone": "timestamp",
    "text": "text",
}


class PostgresWarehouse(Backend):
    kind = "postgresql"
    _SQL_TYPES = _SQL_TYPES
    _FROM_SQL = _FROM_SQL
    _PARAM = "%s"
    _SCHEMA = "current_schema()"
    _ERROR_AT_TEXT = "to_char(error_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

    def __init__(self, dsn: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._exec("SET TIME ZONE 'UTC'")
        self._exec(
            f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (sink text PRIMARY KEY, seq bigint NOT NULL, "
            "loaded_at timestamptz, last_error text, error_at timestamptz)"
        )
        self._exec(f"CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name text PRIMARY KEY)")
        self._stages = 0

    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        # Bytes, not str: every statement is built from quoted identifiers, never from values,
        # and psycopg's typing only takes literal strings.
        return self._conn.execute(sql.encode(), params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            # One loader at a time per database (the CLI's sync and the server's may overlap);
            # the lock ends with the transaction.
            self._exec("SELECT pg_advisory_xact_lock(hashtext('trackyard_warehouse'))")
            yield

    def _register_table(self, table: str) -> None:
        self._exec(f"INSERT INTO {TABLES_TABLE} VALUES (%s) ON CONFLICT DO NOTHING", [table])

    def _stage(self, table: str, columns: dict[str, ColumnType], data: Sequence[Sequence[Any]]) -> str:
        self._stages += 1
        stage = f"_stage_{self._stages}"
        cols = ", ".join(quote(c) for c in columns)
        self._exec(f"CREATE TEMP TABLE {stage} (LIKE {quote(table)}) ON COMMIT DROP")
        with self._conn.cursor().copy(f"COPY {stage} ({cols}) FROM STDIN".encode()) as copy:
            for row in zip(*data, strict=True):
                copy.write_row(row)
        return stage

    def _unstage(self, stage: str) -> None:
        pass  # ON COMMIT DROP: the commit drops it

    def set_position(self, sink: str, seq: int) -> None:
        self._exec(
            f"INSERT INTO {LOADS_TABLE} (sink, seq, loaded_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, loaded_at = excluded.loaded_at",
            [sink, seq],
        )

    def record_error(self, sink: str, message: str) -> None:
        self._exec(
            f"INSERT INTO {LOADS_TABLE} (sink, seq, last_error, error_at) VALUES (%s, 0, %s, now()) "
            "ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error, error_at = excluded.error_at",
            [sink, message],
        )

    def drop_all(self, sink: str) -> None:
        with self._conn.transaction():
            self._drop_tables(sink)

    def close(self) -> None:
        self._conn.close()

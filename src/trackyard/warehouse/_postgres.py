"""PostgreSQL as the warehouse, by DSN: COPY into a staging table, then merge on id (RudderStack's way)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from trackyard.warehouse._backend import LOADS_TABLE, TABLES_TABLE, Schema, merge_statements, quote
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


class PostgresWarehouse:
    kind = "postgresql"

    def __init__(self, dsn: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._exec("SET TIME ZONE 'UTC'")
        self._exec(
            f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (sink text PRIMARY KEY, seq bigint NOT NULL, "
            "loaded_at timestamptz, last_error text, error_at timestamptz)"
        )
        self._exec(f"CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name text PRIMARY KEY)")
        self._stages = 0

    def _exec(self, text: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        # Bytes, not str: every statement is built from quoted identifiers, never from values,
        # and psycopg's typing only takes literal strings.
        return self._conn.execute(text.encode(), params)

    def schema(self) -> Schema:
        rows = self._exec(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            f"JOIN {TABLES_TABLE} t ON t.name = c.table_name WHERE c.table_schema = current_schema() "
            "ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
        out: Schema = {}
        for table, column, data_type in rows:
            out.setdefault(table, {})[column] = _FROM_SQL.get(data_type, "text")
        return out

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            # One loader at a time per database (the CLI's sync and the server's may overlap);
            # the lock ends with the transaction.
            self._exec("SELECT pg_advisory_xact_lock(hashtext('trackyard_warehouse'))")
            yield

    def create_table(self, table: str, columns: dict[str, ColumnType]) -> None:
        spec = ", ".join(f"{quote(c)} {_SQL_TYPES[t]}" for c, t in columns.items())
        self._exec(f"CREATE TABLE {quote(table)} ({spec})")
        self._exec(f"INSERT INTO {TABLES_TABLE} VALUES (%s) ON CONFLICT DO NOTHING", [table])

    def add_column(self, table: str, column: str, type: ColumnType) -> None:
        self._exec(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {_SQL_TYPES[type]}")

    def widen_column(self, table: str, column: str) -> None:
        self._exec(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE double precision")

    def load(
        self,
        table: str,
        columns: dict[str, ColumnType],
        rows: Sequence[Sequence[Any]],
        keys: tuple[str, ...],
        latest: bool,
    ) -> None:
        self._stages += 1
        stage = f"_stage_{self._stages}"
        names = list(columns)
        cols = ", ".join(quote(c) for c in names)
        self._exec(f"CREATE TEMP TABLE {stage} (LIKE {quote(table)}) ON COMMIT DROP")
        with self._conn.cursor().copy(f"COPY {stage} ({cols}) FROM STDIN".encode()) as copy:
            for row in rows:
                copy.write_row(row)
        for statement in merge_statements(table, stage, names, keys, latest):
            self._exec(statement)

    def position(self, sink: str) -> int:
        row = self._exec(f"SELECT seq FROM {LOADS_TABLE} WHERE sink = %s", [sink]).fetchone()
        return 0 if row is None else int(row[0])

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

    def last_error(self, sink: str) -> tuple[str | None, str | None]:
        row = self._exec(
            "SELECT last_error, to_char(error_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
            f"FROM {LOADS_TABLE} WHERE sink = %s",
            [sink],
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def drop_all(self, sink: str) -> None:
        with self._conn.transaction():
            for table in self.schema():
                self._exec(f"DROP TABLE {quote(table)}")
            self._exec(f"DELETE FROM {TABLES_TABLE}")
            self._exec(f"DELETE FROM {LOADS_TABLE} WHERE sink = %s", [sink])

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._exec(sql)
        columns = [d.name for d in cursor.description or []]
        return columns, cursor.fetchall() if columns else []

    def close(self) -> None:
        self._conn.close()

"""The embedded warehouse: one DuckDB file, ``warehouse.duckdb`` in the data dir by default."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb

from trackyard.warehouse._backend import LOADS_TABLE, TABLES_TABLE, Schema, merge_statements, quote
from trackyard.warehouse.schema import ColumnType

_SQL_TYPES: Final[dict[ColumnType, str]] = {
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "text": "VARCHAR",
}
_FROM_SQL: Final[dict[str, ColumnType]] = {
    "BIGINT": "bigint",
    "DOUBLE": "double",
    "BOOLEAN": "boolean",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "VARCHAR": "text",
}
#: How a column's values travel: as a typed list, unnested in SQL (far faster than executemany).
_LIST_TYPES: Final[dict[ColumnType, str]] = {
    "bigint": "BIGINT[]",
    "double": "DOUBLE[]",
    "boolean": "BOOLEAN[]",
    "timestamp": "VARCHAR[]",
    "text": "VARCHAR[]",
}


class DuckDBWarehouse:
    kind = "duckdb"

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = duckdb.connect(str(path), read_only=read_only)
        self._conn.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (sink VARCHAR, seq BIGINT, loaded_at TIMESTAMPTZ, "
                "last_error VARCHAR, error_at TIMESTAMPTZ)"
            )
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name VARCHAR)")

    def schema(self) -> Schema:
        rows = self._conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            f"JOIN {TABLES_TABLE} t ON t.name = c.table_name WHERE c.table_schema = 'main' "
            "ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
        out: Schema = {}
        for table, column, data_type in rows:
            out.setdefault(table, {})[column] = _FROM_SQL.get(data_type, "text")
        return out

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.begin()
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.commit()

    def create_table(self, table: str, columns: dict[str, ColumnType]) -> None:
        spec = ", ".join(f"{quote(c)} {_SQL_TYPES[t]}" for c, t in columns.items())
        self._conn.execute(f"CREATE TABLE {quote(table)} ({spec})")
        self._conn.execute(
            f"INSERT INTO {TABLES_TABLE} SELECT ? "
            f"WHERE NOT EXISTS (SELECT 1 FROM {TABLES_TABLE} WHERE name = ?)",
            [table, table],
        )

    def add_column(self, table: str, column: str, type: ColumnType) -> None:
        self._conn.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {_SQL_TYPES[type]}")

    def widen_column(self, table: str, column: str) -> None:
        self._conn.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE DOUBLE")

    def load(
        self,
        table: str,
        columns: dict[str, ColumnType],
        rows: Sequence[Sequence[Any]],
        keys: tuple[str, ...],
        latest: bool,
    ) -> None:
        names = list(columns)
        lists = [list(values) for values in zip(*rows, strict=True)]
        select = ", ".join(
            f"UNNEST(${i + 1}::{_LIST_TYPES[t]})::{_SQL_TYPES[t]} AS {quote(c)}"
            for i, (c, t) in enumerate(columns.items())
        )
        self._conn.execute(f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {select}", lists)
        for statement in merge_statements(table, "_stage", names, keys, latest):
            self._conn.execute(statement)
        self._conn.execute("DROP TABLE _stage")

    def position(self, sink: str) -> int:
        row = self._conn.execute(f"SELECT seq FROM {LOADS_TABLE} WHERE sink = ?", [sink]).fetchone()
        return 0 if row is None else int(row[0])

    def set_position(self, sink: str, seq: int) -> None:
        self._ensure_loads_row(sink)
        self._conn.execute(f"UPDATE {LOADS_TABLE} SET seq = ?, loaded_at = now() WHERE sink = ?", [seq, sink])

    def _ensure_loads_row(self, sink: str) -> None:
        self._conn.execute(
            f"INSERT INTO {LOADS_TABLE} (sink, seq) SELECT ?, 0 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {LOADS_TABLE} WHERE sink = ?)",
            [sink, sink],
        )

    def record_error(self, sink: str, message: str) -> None:
        with self.transaction():
            self._ensure_loads_row(sink)
            self._conn.execute(
                f"UPDATE {LOADS_TABLE} SET last_error = ?, error_at = now() WHERE sink = ?", [message, sink]
            )

    def last_error(self, sink: str) -> tuple[str | None, str | None]:
        row = self._conn.execute(
            f"SELECT last_error, strftime(error_at, '%Y-%m-%dT%H:%M:%SZ') FROM {LOADS_TABLE} WHERE sink = ?",
            [sink],
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def drop_all(self, sink: str) -> None:
        with self.transaction():
            for table in self.schema():
                self._conn.execute(f"DROP TABLE {quote(table)}")
            self._conn.execute(f"DELETE FROM {TABLES_TABLE}")
            self._conn.execute(f"DELETE FROM {LOADS_TABLE} WHERE sink = ?", [sink])

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._conn.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall() if columns else []

    def close(self) -> None:
        self._conn.close()

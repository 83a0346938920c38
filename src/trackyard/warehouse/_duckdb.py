"""The embedded warehouse: one DuckDB file, ``warehouse.duckdb`` in the data dir by default."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow

from trackyard.warehouse._backend import LOADS_TABLE, TABLES_TABLE, Backend, quote
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
#: How a column's values travel: as an Arrow column DuckDB scans in place (timestamps as
#: their ISO text, which DuckDB's cast to TIMESTAMPTZ parses, offsets included).
_ARROW_TYPES: Final[dict[ColumnType, pyarrow.DataType]] = {
    "bigint": pyarrow.int64(),
    "double": pyarrow.float64(),
    "boolean": pyarrow.bool_(),
    "timestamp": pyarrow.string(),
    "text": pyarrow.string(),
}


class DuckDBWarehouse(Backend):
    kind = "duckdb"
    _SQL_TYPES = _SQL_TYPES
    _FROM_SQL = _FROM_SQL
    _PARAM = "?"
    _SCHEMA = "'main'"
    _ERROR_AT_TEXT = "strftime(error_at, '%Y-%m-%dT%H:%M:%SZ')"

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

    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self._conn.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.begin()
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.commit()

    def _register_table(self, table: str) -> None:
        self._conn.execute(
            f"INSERT INTO {TABLES_TABLE} SELECT ? "
            f"WHERE NOT EXISTS (SELECT 1 FROM {TABLES_TABLE} WHERE name = ?)",
            [table, table],
        )

    def _stage(self, table: str, columns: dict[str, ColumnType], data: Sequence[Sequence[Any]]) -> str:
        types = [_ARROW_TYPES[t] for t in columns.values()]
        batch = pyarrow.table(
            [pyarrow.array(values, type=type_) for values, type_ in zip(data, types, strict=True)],
            names=[f"c{i}" for i in range(len(columns))],
        )
        select = ", ".join(f"c{i}::{_SQL_TYPES[t]} AS {quote(c)}" for i, (c, t) in enumerate(columns.items()))
        self._conn.complete()  # DuckDB registers nothing while a result is open (a fetchone's)
        self._conn.register("_batch", batch)
        try:
            self._conn.execute(f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {select} FROM _batch")
        finally:
            self._conn.unregister("_batch")
        return "_stage"

    def _unstage(self, stage: str) -> None:
        self._conn.execute(f"DROP TABLE {stage}")

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

    def drop_all(self, sink: str) -> None:
        with self.transaction():
            self._drop_tables(sink)

    def close(self) -> None:
        self._conn.close()

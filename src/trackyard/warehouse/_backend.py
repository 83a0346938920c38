"""What a warehouse backend provides to the loader, and the SQL both backends share.

The loader decides names, types and rows; a backend only runs DDL, bulk-loads a batch into
a staging table and merges it into the target, all inside one transaction that also
moves the cursor (``_trackyard_loads``), so a crash leaves either the whole batch or none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Final, Protocol

from trackyard.warehouse.schema import ColumnType

#: The loader's own bookkeeping tables (never dropped by a rebuild of the data tables alone).
LOADS_TABLE: Final = "_trackyard_loads"
TABLES_TABLE: Final = "_trackyard_tables"

Schema = dict[str, dict[str, ColumnType]]


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse (DuckDB's file) for longer than worth waiting."""


class _Cursor(Protocol):
    """What the shared SQL reads back: DuckDB's connection and psycopg's cursor both have it."""

    @property
    def description(self) -> Sequence[Any] | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Backend(ABC):
    """One warehouse: the SQL that reads the same in both dialects is here, the rest in each backend."""

    kind: ClassVar[str]
    #: The dialect's spelling of each column type, and back (as information_schema names it).
    _SQL_TYPES: ClassVar[Mapping[ColumnType, str]]
    _FROM_SQL: ClassVar[Mapping[str, ColumnType]]
    #: A parameter's placeholder in a statement.
    _PARAM: ClassVar[str]
    #: The schema the loader's tables live in, as an SQL expression.
    _SCHEMA: ClassVar[str]
    #: ``_trackyard_loads.error_at`` as ISO 8601 text in UTC (``...Z``).
    _ERROR_AT_TEXT: ClassVar[str]

    @abstractmethod
    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]: ...

    def release(self) -> None:  # noqa: B027 (only DuckDB holds anything between batches)
        """The loader has caught up: let go of what other processes may be waiting for."""

    def reading(self) -> AbstractContextManager[None]:
        """Several reads as one (DuckDB: one opening of its file, read-only, for all of them)."""
        return self._session()

    def _session(self) -> AbstractContextManager[None]:
        """Around each read outside a transaction: DuckDB opens its file only for it."""
        return nullcontext()

    @abstractmethod
    def _register_table(self, table: str) -> None:
        """Note ``table`` in ``_trackyard_tables`` (once) as one of the loader's."""

    @abstractmethod
    def _stage(self, table: str, columns: dict[str, ColumnType], data: Sequence[Sequence[Any]]) -> str:
        """Bulk-load ``data`` (one sequence of values per column, in ``columns``' order) into a
        new staging table shaped like ``columns``; return its name."""

    @abstractmethod
    def _unstage(self, stage: str) -> None:
        """Drop the staging table once merged (nothing to do where the commit drops it)."""

    @abstractmethod
    def set_position(self, sink: str, seq: int) -> None: ...

    @abstractmethod
    def record_error(self, sink: str, message: str) -> None:
        """Note a failed batch (in its own transaction: the batch's was rolled back)."""

    @abstractmethod
    def drop_all(self, sink: str) -> None:
        """Drop every table the loader made and reset the cursor to 0, in one transaction."""

    @abstractmethod
    def close(self) -> None: ...

    def schema(self) -> Schema:
        """The loader's tables and their columns in order, as the warehouse has them now."""
        with self._session():
            rows = self._exec(
                "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
                f"JOIN {TABLES_TABLE} t ON t.name = c.table_name WHERE c.table_schema = {self._SCHEMA} "
                "ORDER BY c.table_name, c.ordinal_position"
            ).fetchall()
        out: Schema = {}
        for table, column, data_type in rows:
            out.setdefault(table, {})[column] = self._FROM_SQL.get(data_type, "text")
        return out

    def create_table(self, table: str, columns: dict[str, ColumnType]) -> None:
        spec = ", ".join(f"{quote(c)} {self._SQL_TYPES[t]}" for c, t in columns.items())
        self._exec(f"CREATE TABLE {quote(table)} ({spec})")
        self._register_table(table)

    def add_column(self, table: str, column: str, type: ColumnType) -> None:
        self._exec(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {self._SQL_TYPES[type]}")

    def widen_column(self, table: str, column: str) -> None:
        """bigint → double, the one type change the loader makes."""
        double = self._SQL_TYPES["double"]
        self._exec(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE {double}")

    def load(
        self,
        table: str,
        columns: dict[str, ColumnType],
        data: Sequence[Sequence[Any]],
        keys: tuple[str, ...],
        latest: bool,
    ) -> None:
        """Merge rows into ``table`` on ``keys``: replace the row, or (``latest``) coalesce it.

        ``data`` holds the rows column by column (one sequence per column of ``columns``).
        """
        stage = self._stage(table, columns, data)
        for statement in merge_statements(table, stage, list(columns), keys, latest):
            self._exec(statement)
        self._unstage(stage)

    def position(self, sink: str) -> int:
        with self._session():
            row = self._exec(f"SELECT seq FROM {LOADS_TABLE} WHERE sink = {self._PARAM}", [sink]).fetchone()
        return 0 if row is None else int(row[0])

    def last_error(self, sink: str) -> tuple[str | None, str | None]:
        """The last error message and when it happened, ``(None, None)`` if none."""
        with self._session():
            row = self._exec(
                f"SELECT last_error, {self._ERROR_AT_TEXT} FROM {LOADS_TABLE} WHERE sink = {self._PARAM}",
                [sink],
            ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def _drop_tables(self, sink: str) -> None:
        """What ``drop_all`` does, inside the transaction the backend opens for it."""
        for table in self.schema():
            self._exec(f"DROP TABLE {quote(table)}")
        self._exec(f"DELETE FROM {TABLES_TABLE}")
        self._exec(f"DELETE FROM {LOADS_TABLE} WHERE sink = {self._PARAM}", [sink])

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._session():
            cursor = self._exec(sql)
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall() if columns else []


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def merge_statements(
    table: str, stage: str, columns: Sequence[str], keys: Sequence[str], latest: bool
) -> Iterator[str]:
    """RudderStack's merge: delete the target rows the stage replaces, then insert the stage.

    For ``latest`` tables (users, accounts) each column keeps its old value where the new
    row has none, so traits accumulate across calls.
    """
    target, cols = quote(table), ", ".join(quote(c) for c in columns)
    match = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    if latest:
        sets = ", ".join(
            f"{quote(c)} = COALESCE(s.{quote(c)}, t.{quote(c)})" for c in columns if c not in keys
        )
        yield f"UPDATE {target} AS t SET {sets} FROM {stage} AS s WHERE {match}"
        yield (
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})"
        )
    else:
        yield f"DELETE FROM {target} AS t USING {stage} AS s WHERE {match}"
        yield f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}"

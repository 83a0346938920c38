"""What a warehouse backend provides to the loader, and the SQL both backends share.

The loader decides names, types and rows; a backend only runs DDL, bulk-loads a batch into
a staging table and merges it into the target, all inside one transaction that also
moves the cursor (``_trackyard_loads``), so a crash leaves either the whole batch or none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

from trackyard.warehouse.schema import ColumnType

#: The loader's own bookkeeping tables (never dropped by a rebuild of the data tables alone).
LOADS_TABLE: Final = "_trackyard_loads"
TABLES_TABLE: Final = "_trackyard_tables"

Schema = dict[str, dict[str, ColumnType]]


class Backend(Protocol):
    kind: str

    def schema(self) -> Schema:
        """The loader's tables and their columns in order, as the warehouse has them now."""
        ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def create_table(self, table: str, columns: dict[str, ColumnType]) -> None: ...

    def add_column(self, table: str, column: str, type: ColumnType) -> None: ...

    def widen_column(self, table: str, column: str) -> None:
        """bigint → double, the one type change the loader makes."""
        ...

    def load(
        self,
        table: str,
        columns: dict[str, ColumnType],
        rows: Sequence[Sequence[Any]],
        keys: tuple[str, ...],
        latest: bool,
    ) -> None:
        """Merge ``rows`` into ``table`` on ``keys``: replace the row, or (``latest``) coalesce it."""
        ...

    def position(self, sink: str) -> int: ...

    def set_position(self, sink: str, seq: int) -> None: ...

    def record_error(self, sink: str, message: str) -> None:
        """Note a failed batch (in its own transaction: the batch's was rolled back)."""
        ...

    def last_error(self, sink: str) -> tuple[str | None, str | None]:
        """The last error message and when it happened, ``(None, None)`` if none."""
        ...

    def drop_all(self, sink: str) -> None:
        """Drop every table the loader made and reset the cursor to 0, in one transaction."""
        ...

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def close(self) -> None: ...


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

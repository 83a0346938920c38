"""The embedded warehouse: one DuckDB file, ``warehouse.duckdb`` in the data dir by default."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow

from trackyard.warehouse._backend import LOADS_TABLE, TABLES_TABLE, Backend, WarehouseBusy, quote
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


#: Seconds the loader keeps the file open across consecutive batches (a backlog) at most.
HOLD: Final = 1.0
#: Seconds a reader (``sql``, ``warehouse status``, ``export``) waits for the loader to let go
#: of the file before giving up with :class:`WarehouseBusy`; the loader waits for readers
#: longer (a batch that fails to open the file is retried, and in the end split up).
READ_WAIT: Final = 10.0
WRITE_WAIT: Final = 60.0
#: The loader's settings on its write connection. One thread: it merges one batch at a
#: time, and DuckDB's parallelism on a few thousand rows gained nothing measurable, while
#: each thread keeps allocator caches of its own. A memory limit well below DuckDB's
#: default (80% of the machine's RAM) so that its cache of table blocks cannot grow with
#: the warehouse; not lower, since a batch of wide rows (hundreds of columns) needs more
#: than 128 MB to merge (docs/performance.md, "Memory").
_LOADER_SETTINGS: Final = ("SET threads = 1", "SET memory_limit = '512MB'")


def connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting while another process holds it.

    DuckDB lets one process write a file, or any number read it, never both at once; the
    loader holds it only for its transactions (``HOLD`` seconds in a row at most) and
    readers for one query, so a wait here is short.
    """
    wait = READ_WAIT if read_only else WRITE_WAIT
    deadline = time.monotonic() + wait
    delay = 0.005
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"{path} stayed in use by another process for {wait:.0f} s ({error}). "
                    "A loader holds it only while it commits a batch: a long query or a stuck "
                    "process is holding it; try again, or stop that process."
                ) from None
            time.sleep(delay)  # a retry's backoff: the holder gives no signal to wait on
            delay = min(delay * 2, 0.05)
    conn.execute("SET TimeZone = 'UTC'")
    if not read_only:
        for setting in _LOADER_SETTINGS:
            conn.execute(setting)
    return conn


class DuckDBWarehouse(Backend):
    """The DuckDB file, opened for an operation and closed after it (docs/warehouse.md,
    "Reading while the loader runs").

    So the loader (in ``serve``) and readers (``trackyard sql``) take turns on the file
    instead of one locking the others out: a transaction opens it for writing, a read
    opens it read-only (several readers at once), each waiting briefly for the other. Only
    a backlog's consecutive transactions share one opening, for ``hold`` seconds at most.
    """

    kind = "duckdb"
    _SQL_TYPES = _SQL_TYPES
    _FROM_SQL = _FROM_SQL
    _PARAM = "?"
    _SCHEMA = "'main'"
    _ERROR_AT_TEXT = "strftime(error_at, '%Y-%m-%dT%H:%M:%SZ')"

    def __init__(self, path: Path, *, hold: float = HOLD) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._hold = hold
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._writable = False
        #: When the write connection kept between transactions was opened (None: none kept).
        self._held_since: float | None = None

    def _connect(self, write: bool) -> duckdb.DuckDBPyConnection:
        if write or self.path.exists():
            conn = connect(self.path, read_only=not write)
            bookkeeping = write
        else:
            # No file before the first load: a reader sees an empty warehouse, and creates none.
            conn = duckdb.connect(":memory:")
            conn.execute("SET TimeZone = 'UTC'")
            bookkeeping = True
        self._conn, self._writable = conn, write
        if bookkeeping:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (sink VARCHAR, seq BIGINT, "
                "loaded_at TIMESTAMPTZ, last_error VARCHAR, error_at TIMESTAMPTZ)"
            )
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name VARCHAR)")
        return conn

    def _disconnect(self) -> None:
        conn, self._conn, self._held_since = self._conn, None, None
        if conn is not None:
            conn.close()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[None]:
        if self._conn is not None and (self._writable or not write):
            yield  # inside an open session, or on the write connection kept since the last batch
            return
        if self._conn is not None:
            raise RuntimeError("a write inside a read-only session of the DuckDB warehouse")
        self._connect(write)
        try:
            yield
        finally:
            if self._held_since is None:
                self._disconnect()

    @property
    def _open(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise RuntimeError("the DuckDB warehouse is used outside a session")
        return self._conn

    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self._open.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One batch's transaction. The file stays open for the next batch while a backlog
        loads (opening and checkpointing costs about as much as a batch), but never longer
        than ``hold`` seconds in a row, so that readers get their turn; :meth:`release`
        closes it when the loader has caught up."""
        if self._conn is None:
            self._connect(write=True)
            self._held_since = time.monotonic()
        elif not self._writable:
            raise RuntimeError("a transaction inside a read-only session of the DuckDB warehouse")
        conn = self._open
        try:
            conn.begin()
            try:
                yield
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except BaseException:
            if self._held_since is not None:
                self._disconnect()  # start the next try afresh
            raise
        # Kept (``_held_since`` set) only when this opened it; an outer session closes its own.
        if self._held_since is not None and time.monotonic() - self._held_since >= self._hold:
            self._disconnect()

    def release(self) -> None:
        if self._held_since is not None:
            self._disconnect()

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` read-only (beside other readers); a statement that writes runs again
        in a write session (DuckDB refused it before doing anything)."""
        if self._conn is not None:  # inside a session (``reading``): on its connection
            return super().query(sql)
        if not self.path.exists():
            with self._session(write=True):  # the statement may create a table: create the file
                return super().query(sql)
        try:
            return super().query(sql)
        except duckdb.InvalidInputException as error:
            if "read-only" not in str(error):
                raise
        with self._session(write=True):
            return super().query(sql)

    def _register_table(self, table: str) -> None:
        self._open.execute(
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
        self._open.complete()  # DuckDB registers nothing while a result is open (a fetchone's)
        self._open.register("_batch", batch)
        try:
            self._open.execute(f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {select} FROM _batch")
        finally:
            self._open.unregister("_batch")
        return "_stage"

    def _unstage(self, stage: str) -> None:
        self._open.execute(f"DROP TABLE {stage}")

    def set_position(self, sink: str, seq: int) -> None:
        self._ensure_loads_row(sink)
        self._open.execute(f"UPDATE {LOADS_TABLE} SET seq = ?, loaded_at = now() WHERE sink = ?", [seq, sink])

    def _ensure_loads_row(self, sink: str) -> None:
        self._open.execute(
            f"INSERT INTO {LOADS_TABLE} (sink, seq) SELECT ?, 0 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {LOADS_TABLE} WHERE sink = ?)",
            [sink, sink],
        )

    def record_error(self, sink: str, message: str) -> None:
        with self.transaction():
            self._ensure_loads_row(sink)
            self._open.execute(
                f"UPDATE {LOADS_TABLE} SET last_error = ?, error_at = now() WHERE sink = ?", [message, sink]
            )

    def drop_all(self, sink: str) -> None:
        with self.transaction():
            self._drop_tables(sink)

    def close(self) -> None:
        self.release()

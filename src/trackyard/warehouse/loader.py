"""The warehouse loader: a sink that turns batches of the log into rows, and the sync loop.

``WarehouseSink`` has the shape the consumer framework drives (``name``, ``position``,
``apply``, ``reset``, ``close``); ``sync`` is the standalone loop the CLI runs. Each batch,
its schema changes and the new cursor commit in one warehouse transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from trackyard.consumers.runner import Interrupted, StopFlag
from trackyard.event import format_timestamp, now_micros
from trackyard.storage.base import EventLog, StoredEvent
from trackyard.warehouse._backend import Backend, Schema
from trackyard.warehouse.schema import (
    INT64_MAX,
    INT64_MIN,
    LATEST_TABLES,
    MAX_COLUMNS,
    WIDEN,
    ColumnType,
    Discard,
    Refused,
    coerce,
    infer_type,
    is_timestamp,
    key_columns,
    reserved_columns,
    rows_for,
)

#: Seconds between batches after which the loader counts as caught up: the runner reads
#: the next batch at once while there is a backlog, and waits its poll interval (0.5 s)
#: when not. Half of that, so that a busy machine's scheduling delays do not count.
_IDLE: Final = 0.25

#: Events read from the log per batch (and per warehouse transaction) by ``sync``.
DEFAULT_BATCH: Final = 5000

#: Tables one warehouse transaction writes at most: a batch with more (thousands of
#: distinct event names, each a table of its own) commits in parts of about this many, so
#: that a stop request waits for one part only (each table costs its DDL and a merge).
MAX_TABLES_PER_TRANSACTION: Final = 100


#: ``TRACKYARD_WAREHOUSE=off`` (``serve --no-warehouse``): no loader runs.
OFF: Final = "off"


def enabled(url: str | None) -> bool:
    """Whether ``serve`` runs the loader: always, into the embedded DuckDB file by default."""
    return url != OFF


def open_backend(url: str | None, data_dir: Path) -> Backend:
    """The warehouse a ``--warehouse`` URL names: absent is the DuckDB file in the data dir."""
    if url == OFF:
        raise ValueError(
            f"the warehouse is turned off (TRACKYARD_WAREHOUSE={OFF}); unset it, or name one "
            "with --warehouse (postgresql://..., duckdb:///path/file.duckdb)"
        )
    if not url:
        from trackyard.warehouse._duckdb import DuckDBWarehouse

        return DuckDBWarehouse(data_dir / "warehouse.duckdb")
    if url.startswith(("postgresql://", "postgres://")):
        from trackyard.warehouse._postgres import PostgresWarehouse

        return PostgresWarehouse(url)
    if url.startswith("duckdb://"):
        from trackyard.warehouse._duckdb import DuckDBWarehouse

        return DuckDBWarehouse(Path(url.removeprefix("duckdb://")))
    raise ValueError(
        f"unsupported warehouse URL {url!r}: use postgresql://..., duckdb:///path/file.duckdb, "
        "or nothing for warehouse.duckdb in the data dir"
    )


class WarehouseSink:
    """Loads canonical events into Segment's warehouse tables."""

    name = "warehouse"

    def __init__(
        self, backend: Backend, sources: Mapping[int, str] | None = None, stop: StopFlag | None = None
    ) -> None:
        self._backend = backend
        #: Checked between tables: a stop abandons the part in hand (rolled back) and what follows.
        self._stop = stop or StopFlag()
        #: source_id → name, for events whose canonical ``source`` tag lacks one.
        self._sources = dict(sources or {})
        #: What the warehouse has, as of this sink's last transaction (read on first need,
        #: so that a reader such as ``trackyard sql`` does not read it for nothing).
        self._schema: Schema | None = None
        #: The cursor as this sink last read or committed it. The runner asks before every
        #: read; answering from memory spares opening the warehouse (DuckDB: its file) each time.
        self._position: int | None = None
        self._applied_at = 0.0

    @classmethod
    def open(
        cls,
        url: str | None,
        data_dir: Path,
        sources: Mapping[int, str] | None = None,
        stop: StopFlag | None = None,
    ) -> WarehouseSink:
        return cls(open_backend(url, data_dir), sources, stop)

    @property
    def backend(self) -> Backend:
        return self._backend

    def position(self) -> int:
        if self._position is None:
            self._position = self._backend.position(self.name)
        return self._position

    def apply(self, events: Sequence[StoredEvent]) -> None:
        """Load ``events``: in one transaction, or in parts when they fill more than
        ``MAX_TABLES_PER_TRANSACTION`` tables. :class:`Interrupted` at a stop request between
        two tables: the parts committed before it stay, the part in hand rolls back."""
        start = 0
        while start < len(events):
            if self._stop.is_set():
                raise Interrupted(f"stopped before seq {events[start].seq}")
            start = self._apply_part(events, start)

    def _apply_part(self, events: Sequence[StoredEvent], start: int) -> int:
        """Load ``events[start:end]`` in one transaction, ``end`` where the tables reach their
        cap; return ``end``."""
        if self._schema is None:
            self._schema = self._backend.schema()
        read_after = self._position
        plan = _Plan(self._schema, format_timestamp(now_micros()))
        end = start
        while end < len(events) and plan.tables < MAX_TABLES_PER_TRANSACTION:
            plan.add_event(events[end], self._sources)
            end += 1
        last = events[end - 1].seq
        try:
            with self._backend.transaction():
                current = self._backend.position(self.name)
                # Skipped: another loader committed this batch first, or a rebuild moved the
                # cursor back since this sink read the batch (the caller reads again from it).
                skipped = current >= last or (read_after is not None and current < read_after)
                if not skipped:
                    plan.write(self._backend, self._stop)
                    self._backend.set_position(self.name, last)
        except Interrupted:
            self._schema = self._position = None  # rolled back, DDL included
            raise
        except Exception as error:
            # The transaction rolled back, DDL included: re-read what the warehouse has.
            self._schema = self._position = None
            self._backend.record_error(self.name, f"{type(error).__name__}: {error}")
            raise
        if skipped:
            self._schema, self._position = None, current
            end = len(events)  # the caller reads again from the warehouse's cursor
        else:
            self._schema, self._position = plan.schema, last
        self._applied_at = time.monotonic()
        return end

    # -- the consumer framework's Sink (trackyard.consumers.runner): the cursor is the warehouse's

    def before_read(self) -> None:
        """Nothing moves the warehouse's cursor but its own loads. A read that does not follow
        a batch at once comes after the runner found nothing new: the loader has caught up,
        and lets go of the warehouse (DuckDB's file) for readers until the next batch."""
        if time.monotonic() - self._applied_at > _IDLE:
            self._backend.release()

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        self.apply(events)

    def advance(self, seq: int) -> None:
        """Move the cursor past an event the runner sent to the dead letters."""
        with self._backend.transaction():
            current = self._backend.position(self.name)
            if current < seq:
                self._backend.set_position(self.name, seq)
        self._position = max(current, seq)

    def reset(self) -> None:
        self._backend.drop_all(self.name)
        self._schema, self._position = None, 0

    def close(self) -> None:
        self._backend.close()


class _Plan:
    """One batch: its rows per table, typed against the schema, and the schema changes they need."""

    def __init__(self, schema: Schema, uuid_ts: str) -> None:
        self._before = schema
        self.schema: Schema = {table: dict(columns) for table, columns in schema.items()}
        self._uuid_ts = uuid_ts
        #: table → row key → column values, in log order; a later row with the same key wins.
        self._rows: dict[str, dict[Any, dict[str, Any]]] = {}
        self._widened: list[tuple[str, str]] = []

    @property
    def tables(self) -> int:
        """How many tables this batch writes rows to."""
        return len(self._rows)

    def add_event(self, stored: StoredEvent, sources: Mapping[int, str]) -> None:
        discards: list[Discard] = []
        try:
            event = msgspec.json.decode(stored.body)
        except msgspec.DecodeError:
            event = None
        if not isinstance(event, dict):
            text = stored.body.decode("utf-8", "replace")
            discards.append(
                Discard(str(stored.seq), "tracks", "", text, "log entry is not a JSON object", None)
            )
            rows = []
        else:
            if not isinstance(event.get("source"), dict) and stored.source_id in sources:
                event["source"] = {"id": stored.source_id, "name": sources[stored.source_id]}
            rows = rows_for(event, discards)
        for row in rows:
            self._add(row.table, row.values, discards)
        for d in discards:
            values = {f: getattr(d, f) for f in Discard.__struct_fields__ if getattr(d, f) is not None}
            self._add("discards", values, None)

    def _add(self, table: str, values: dict[str, Any], discards: list[Discard] | None) -> None:
        columns = self.schema.get(table)
        if columns is None:
            columns = self.schema[table] = dict(reserved_columns(table))
        # Most values fit their column as they are; only the rest take the slow path
        # (new columns, conversions, widening, refusals). Checked inline: this loop runs
        # for every value of every row.
        unfit: list[str] = []
        for column, value in values.items():
            type_ = columns.get(column)
            kind = type(value)
            if type_ == "text":
                if kind is str:
                    continue
            elif kind is float:
                if type_ == "double":
                    continue
            elif kind is str:
                if type_ == "timestamp" and is_timestamp(value):
                    continue
            elif kind is int:
                if type_ == "bigint" and INT64_MIN <= value <= INT64_MAX:
                    continue
            elif kind is bool and type_ == "boolean":
                continue
            unfit.append(column)
        if unfit:
            self._convert(table, columns, values, unfit, discards)
        values["uuid_ts"] = self._uuid_ts
        key = tuple(values.get(k) for k in key_columns(table))
        bucket = self._rows.setdefault(table, {})
        previous = bucket.get(key)
        if previous is not None and table in LATEST_TABLES:
            previous.update(values)
        else:
            bucket.pop(key, None)
            bucket[key] = values

    def _convert(
        self,
        table: str,
        columns: dict[str, ColumnType],
        values: dict[str, Any],
        unfit: list[str],
        discards: list[Discard] | None,
    ) -> None:
        """Type the values that did not fit as they were: infer, convert, widen or refuse."""
        row_id = values.get("id", "")
        received_at = values.get("received_at")
        for column in unfit:
            value = values[column]
            type_ = columns.get(column)
            try:
                if type_ is None:
                    if len(columns) >= MAX_COLUMNS:
                        raise Refused(f"the table has reached its limit of {MAX_COLUMNS} columns")
                    type_ = columns[column] = infer_type(value)
                converted = coerce(value, type_)
                if converted is WIDEN:
                    columns[column] = "double"
                    self._widened.append((table, column))
                    converted = float(value)
            except Refused as refused:
                del values[column]
                if discards is None:  # a discard's own odd received_at is not worth another discard
                    continue
                discards.append(
                    Discard(
                        str(row_id),
                        table,
                        column,
                        _text(value),
                        str(refused),
                        received_at if isinstance(received_at, str) else None,
                    )
                )
                continue
            values[column] = converted

    def write(self, backend: Backend, stop: StopFlag) -> None:
        for table, columns in self.schema.items():
            if stop.is_set():
                raise Interrupted("stopped while creating the batch's tables")
            old = self._before.get(table)
            if old is None:
                backend.create_table(table, columns)
                continue
            for column, type_ in columns.items():
                if column not in old:
                    backend.add_column(table, column, type_)
        widened = dict.fromkeys(self._widened)
        for table, column in widened:
            if column in self._before.get(table, {}):
                backend.widen_column(table, column)
        for table, bucket in self._rows.items():
            if stop.is_set():
                raise Interrupted("stopped while loading the batch's tables")
            columns = self.schema[table]
            rows = list(bucket.values())
            data = [[values.get(c) for values in rows] for c in columns]
            for i, c in enumerate(columns):
                if (table, c) in widened:
                    # A widened column's earlier values are ints; the column is double now.
                    data[i] = [float(v) if isinstance(v, int) else v for v in data[i]]
            backend.load(table, columns, data, key_columns(table), table in LATEST_TABLES)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def sync(
    log: EventLog,
    sink: WarehouseSink,
    progress: Callable[[int], None] | None = None,
    batch: int = DEFAULT_BATCH,
) -> int:
    """Load everything the log has past the sink's cursor; return how many events were loaded.

    ``progress`` is called with each batch's size after the batch has committed.
    """
    loaded = 0
    while True:
        events = log.read_events(after=sink.position(), limit=batch)
        if not events:
            return loaded
        sink.apply(events)
        loaded += len(events)
        if progress is not None:
            progress(len(events))

"""``trackyard warehouse``, ``trackyard sql`` and ``trackyard export``: the log as Segment's tables."""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from trackyard.cli._options import data_dir_option
from trackyard.cli._progress import progress_bar
from trackyard.cli._store import opened
from trackyard.event import EVENT_TYPES, parse_timestamp
from trackyard.storage.factory import Backends
from trackyard.warehouse import WarehouseBusy, WarehouseSink, sync
from trackyard.warehouse.export import Format, export_log, export_table
from trackyard.warehouse.loader import DEFAULT_BATCH

warehouse_option = click.option(
    "--warehouse",
    "warehouse_url",
    metavar="URL",
    envvar="TRACKYARD_WAREHOUSE",
    show_envvar=True,
    help="postgresql://user@host/db for PostgreSQL; absent: warehouse.duckdb in the data dir (DuckDB).",
)


@contextlib.contextmanager
def _sink(url: str | None, data_dir: Path, backends: Backends | None = None) -> Iterator[WarehouseSink]:
    sources = {s.id: s.name for s in backends.sources.sources()} if backends is not None else None
    try:
        sink = WarehouseSink.open(url, data_dir, sources)
    except Exception as error:  # a bad URL, a refused connection, a DuckDB file in use
        raise click.ClickException(f"Cannot open the warehouse: {error}") from None
    try:
        yield sink
    except WarehouseBusy as error:
        raise click.ClickException(str(error)) from None
    finally:
        sink.close()


@click.group()
def warehouse() -> None:
    """Load the log into Segment's warehouse tables (DuckDB by default, or PostgreSQL).

    \b
    Tables: tracks, identifies, users, pages, screens, groups, accounts, aliases,
    one table per track event name, and discards (values that did not fit).
    `trackyard serve` runs the loader continuously (the `warehouse` consumer; off with
    --no-warehouse or TRACKYARD_WAREHOUSE=off), and `trackyard sql` reads the embedded
    DuckDB file meanwhile. `trackyard warehouse sync` loads what is pending and exits.
    See docs/warehouse.md.
    """


def _status(sink: WarehouseSink, head: int) -> dict[str, Any]:
    backend = sink.backend
    tables: dict[str, int] = {}
    for table in sorted(backend.schema()):
        _, rows = backend.query(f'SELECT count(*) FROM "{table}"')
        tables[table] = int(rows[0][0])
    error, error_at = backend.last_error(sink.name)
    position = sink.position()
    return {
        "warehouse": backend.kind,
        "position": position,
        "head": head,
        "lag": max(head - position, 0),
        "tables": tables,
        "discards": tables.get("discards", 0),
        "last_error": error,
        "last_error_at": error_at,
    }


@warehouse.command()
@data_dir_option
@warehouse_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def status(data_dir: Path, warehouse_url: str | None, as_json: bool) -> None:
    """Show the warehouse's tables and rows, how far it lags the log, discards and the last error."""
    with opened(data_dir) as backends, _sink(warehouse_url, data_dir) as sink, sink.backend.reading():
        body = _status(sink, backends.log.head_seq())
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(body) + b"\n")
        return
    click.echo(f"warehouse: {body['warehouse']}")
    click.echo(f"position: {body['position']} of {body['head']} (lag {body['lag']})")
    click.echo(f"discards: {body['discards']}")
    click.echo(
        f"last error: {body['last_error'] or '-'}"
        + (f" at {body['last_error_at']}" if body["last_error"] else "")
    )
    table = Table("table", "rows")
    for name, rows in body["tables"].items():
        table.add_row(name, str(rows))
    Console().print(table)


def _run_sync(sink: WarehouseSink, backends: Backends, batch: int, what: str) -> int:
    pending = max(backends.log.head_seq() - sink.position(), 0)
    with progress_bar() as progress:
        task = progress.add_task(what, total=pending)
        loaded = sync(backends.log, sink, lambda n: progress.advance(task, n), batch=batch)
    return loaded


_batch_option = click.option(
    "--batch-size",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(min=1),
    help="Events per warehouse transaction (each commits its rows and the cursor together).",
)


@warehouse.command("sync")
@data_dir_option
@warehouse_option
@_batch_option
def sync_command(data_dir: Path, warehouse_url: str | None, batch_size: int) -> None:
    """Load what the log has beyond the warehouse's cursor, then exit.

    Safe to interrupt at any point: each batch commits with its cursor, so the next run
    goes on where the last committed batch ended, without duplicates or gaps.
    """
    with opened(data_dir) as backends, _sink(warehouse_url, data_dir, backends) as sink:
        loaded = _run_sync(sink, backends, batch_size, "loading")
        click.echo(f"loaded {loaded} events; position {sink.position()}")


@warehouse.command()
@data_dir_option
@warehouse_option
@_batch_option
def rebuild(data_dir: Path, warehouse_url: str | None, batch_size: int) -> None:
    """Drop the warehouse's tables and load the whole log again.

    For after a change of the loader's rules; a rebuild gives the same rows as loading
    incrementally did (uuid_ts, the load time, aside).
    """
    with opened(data_dir) as backends, _sink(warehouse_url, data_dir, backends) as sink:
        sink.reset()
        loaded = _run_sync(sink, backends, batch_size, "rebuilding")
        click.echo(f"loaded {loaded} events; position {sink.position()}")


@warehouse.command()
@data_dir_option
@warehouse_option
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def discards(data_dir: Path, warehouse_url: str | None, limit: int, as_json: bool) -> None:
    """Print values that were not loaded into their column, newest first, with the reason."""
    with _sink(warehouse_url, data_dir) as sink, sink.backend.reading():
        columns = ["row_id", "table_name", "column_name", "column_value", "reason", "received_at"]
        rows: list[tuple[Any, ...]] = []
        if "discards" in sink.backend.schema():
            columns, rows = sink.backend.query(
                "SELECT row_id, table_name, column_name, column_value, reason, received_at FROM discards "
                f"ORDER BY uuid_ts DESC, received_at DESC LIMIT {limit}"
            )
    _print_rows(columns, rows, "json" if as_json else "table")


@click.command()
@click.argument("query")
@data_dir_option
@warehouse_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a row.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
def sql(query: str, data_dir: Path, warehouse_url: str | None, as_json: bool, as_csv: bool) -> None:
    """Run one SQL query on the warehouse and print its rows (a table by default).

    \b
    Example:
      trackyard sql "SELECT event, count(*) FROM tracks GROUP BY 1 ORDER BY 2 DESC"
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other.")
    with _sink(warehouse_url, data_dir) as sink:
        try:
            columns, rows = sink.backend.query(query)
        except Exception as error:  # the warehouse's own message says what is wrong with the query
            raise click.ClickException(str(error).strip()) from None
    _print_rows(columns, rows, "json" if as_json else "csv" if as_csv else "table")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _print_rows(columns: list[str], rows: list[tuple[Any, ...]], how: str) -> None:
    if how == "json":
        out = sys.stdout.buffer
        for row in rows:
            out.write(msgspec.json.encode({c: _plain(v) for c, v in zip(columns, row, strict=True)}) + b"\n")
    elif how == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_plain(v) for v in row] for row in rows)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*("" if v is None else str(_plain(v)) for v in row))
        Console().print(table)


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "jsonl"]), required=True, help="Parquet or JSON lines."
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory to write into."
)
@click.option("--since", metavar="TIME", help="Only events received at or after this ISO-8601 time.")
@click.option(
    "--type", "event_type", type=click.Choice(sorted(EVENT_TYPES)), help="Only events of this type."
)
@click.option(
    "--table",
    metavar="NAME",
    help="Export this table of the DuckDB warehouse instead of the log (e.g. tracks, users).",
)
@data_dir_option
@warehouse_option
def export(
    fmt: str,
    out: Path,
    since: str | None,
    event_type: str | None,
    table: str | None,
    data_dir: Path,
    warehouse_url: str | None,
) -> None:
    """Write the log (or one warehouse table) to DIR as events.parquet / events.jsonl.

    The log's Parquet file has the columns seq, source_id, type, message_id, user_id,
    anonymous_id, event, received_at and body (the canonical JSON); its JSON lines are the
    canonical events themselves. Parquet is written by DuckDB's COPY.
    """
    since_us = None
    if since is not None:
        try:
            since_us = parse_timestamp(since)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not an ISO-8601 time", param_hint="--since") from None
    fmt_: Format = "parquet" if fmt == "parquet" else "jsonl"
    if table is not None:
        if event_type is not None:
            raise click.UsageError("--type filters the log; with --table, query with trackyard sql instead.")
        if warehouse_url and not warehouse_url.startswith("duckdb://"):
            raise click.UsageError("--table exports from the DuckDB warehouse only.")
        path = (
            Path(warehouse_url.removeprefix("duckdb://")) if warehouse_url else data_dir / "warehouse.duckdb"
        )
        with _sink(warehouse_url, data_dir) as sink:
            known = table in sink.backend.schema()
        if not known:
            raise click.ClickException(
                f"The warehouse has no table {table!r}. See: trackyard warehouse status."
            )
        try:
            target, written = export_table(path, table, out, fmt_, since_us)
        except WarehouseBusy as error:
            raise click.ClickException(str(error)) from None
    else:
        with opened(data_dir) as backends, progress_bar() as progress:
            task = progress.add_task("exporting", total=backends.log.head_seq())
            target, written = export_log(
                backends.log, out, fmt_, since_us, event_type, lambda n: progress.advance(task, n)
            )
    click.echo(f"wrote {written} rows to {target}")

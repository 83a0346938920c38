"""``trackyard export``: the log, or one warehouse table, as Parquet (through DuckDB's COPY) or JSON lines.

The log is exported in a fixed shape (the columns below plus the canonical JSON ``body``)
so that events of every shape fit one Parquet schema. JSON lines are the stored canonical
bodies themselves, byte for byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import duckdb
import msgspec

from trackyard.event import parse_timestamp
from trackyard.storage.base import EventLog
from trackyard.warehouse._backend import quote

Format = Literal["parquet", "jsonl"]

_PAGE: Final = 5000
_LOG_COLUMNS: Final = (
    "seq BIGINT, source_id BIGINT, type VARCHAR, message_id VARCHAR, user_id VARCHAR, "
    "anonymous_id VARCHAR, event VARCHAR, received_at TIMESTAMPTZ, body VARCHAR"
)


class _Fields(msgspec.Struct):
    """The few top-level fields the export's columns hold; the rest stays in ``body``."""

    messageId: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    name: str | None = None
    receivedAt: str | None = None


_decode: Final = msgspec.json.Decoder(_Fields).decode


def export_log(
    log: EventLog,
    out: Path,
    fmt: Format,
    since_us: int | None = None,
    type: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, int]:
    """Write the log's events (received at or after ``since_us``, of ``type``); return the file and count."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"events.{fmt}"
    written = 0
    conn = duckdb.connect() if fmt == "parquet" else None
    if conn is not None:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"CREATE TABLE events ({_LOG_COLUMNS})")
    with target.open("wb") if conn is None else contextlib.nullcontext() as lines:
        after = 0
        while page := log.read_events(after=after, limit=_PAGE, type=type):
            after = page[-1].seq
            rows = []
            for stored in page:
                try:
                    f = _decode(stored.body)
                except msgspec.ValidationError:
                    f = _Fields()
                if since_us is not None and (f.receivedAt is None or _micros(f.receivedAt) < since_us):
                    continue
                rows.append((stored, f))
            if lines is not None:
                lines.write(b"".join(s.body + b"\n" for s, _ in rows))
            elif conn is not None and rows:
                columns = [
                    [s.seq for s, _ in rows],
                    [s.source_id for s, _ in rows],
                    [s.type for s, _ in rows],
                    [f.messageId for _, f in rows],
                    [f.userId for _, f in rows],
                    [f.anonymousId for _, f in rows],
                    [f.event or f.name for _, f in rows],
                    [f.receivedAt for _, f in rows],
                    [s.body.decode() for s, _ in rows],
                ]
                conn.execute(
                    "INSERT INTO events SELECT UNNEST($1::BIGINT[]), UNNEST($2::BIGINT[]), "
                    "UNNEST($3::VARCHAR[]), UNNEST($4::VARCHAR[]), UNNEST($5::VARCHAR[]), "
                    "UNNEST($6::VARCHAR[]), UNNEST($7::VARCHAR[]), UNNEST($8::VARCHAR[])::TIMESTAMPTZ, "
                    "UNNEST($9::VARCHAR[])",
                    columns,
                )
            written += len(rows)
            if progress is not None:
                progress(len(page))
    if conn is not None:
        conn.execute(f"COPY events TO {_literal(target)} (FORMAT parquet)")
        conn.close()
    return target, written


def export_table(
    warehouse: Path, table: str, out: Path, fmt: Format, since_us: int | None = None
) -> tuple[Path, int]:
    """Write one table of the DuckDB warehouse; rows received at or after ``since_us`` only."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{table}.{fmt}"
    from trackyard.warehouse._duckdb import connect  # its Arrow import only where it is used

    conn = connect(warehouse, read_only=True)  # waits while the loader commits a batch
    try:
        where = "" if since_us is None else f" WHERE received_at >= make_timestamptz({since_us}::BIGINT)"
        select = f"SELECT * FROM {quote(table)}{where}"
        row = conn.execute(f"SELECT count(*) FROM ({select})").fetchone()
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT json"
        conn.execute(f"COPY ({select}) TO {_literal(target)} ({options})")
    finally:
        conn.close()
    return target, 0 if row is None else int(row[0])


def _micros(value: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError:
        return -1


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"

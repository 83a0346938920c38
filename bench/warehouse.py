"""How fast the warehouse loader loads a prepared log into DuckDB and into PostgreSQL.

Fills a fresh store with track events shaped like `make bench`'s (plus an identify every
tenth event), then times `sync`, the loader's loop, over the whole log for each warehouse
and prints events per second and the lag left at the end (0 when the load caught up).
PostgreSQL is measured in a scratch database that the bench creates and drops, on the
server at 127.0.0.1:5432 (or the one `--pg` / `TRACKYARD_BENCH_PG` names); without a
server it is skipped. `python -m bench.warehouse [--events N] [--batch N] [--pg DSN]`;
`make bench` runs it as its warehouse scenario (`bench/run.py --only warehouse`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench.consumer import event as track_event
from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.sqlite.store import SQLiteStore
from trackyard.warehouse import WarehouseSink, sync

#: Where the bench looks for a PostgreSQL server to make its scratch database in.
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", "5432", "postgres"


def _event(n: int) -> tuple[str, bytes]:
    if n % 10:
        return "track", track_event(n, 0)
    identify = {
        "type": "identify",
        "userId": f"user-{n}",
        "messageId": f"m-{n}",
        "traits": {"email": f"u{n}@example.com", "plan": "pro"},
        "receivedAt": "2026-01-01T12:00:01.000Z",
        "source": {"id": 1, "format": "segment"},
    }
    return "identify", msgspec.json.encode(identify)


async def _fill(settings: Settings, events: int) -> None:
    store = SQLiteStore(settings)
    try:
        for start in range(0, events, 500):
            records = []
            for n in range(start, min(events, start + 500)):
                kind, body = _event(n)
                records.append(EventRecord(1, f"m-{n}", kind, 0, body))
            await store.append(records, [])
    finally:
        store.close()


def _measure(settings: Settings, url: str | None, batch: int) -> dict[str, Any]:
    store = SQLiteStore(settings, writer=False)
    sink = WarehouseSink.open(url, settings.data_dir)
    try:
        sink.reset()
        started = time.perf_counter()
        loaded = sync(store, sink, batch=batch)
        elapsed = time.perf_counter() - started
        return {
            "events": loaded,
            "seconds": round(elapsed, 2),
            "events_per_s": round(loaded / elapsed),
            "lag_at_end": store.head_seq() - sink.position(),
        }
    finally:
        sink.close()
        store.close()


@contextlib.contextmanager
def scratch_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database's DSN, dropped afterwards (by PostgreSQL's own client
    tools); ``None`` when there is no server, or no tools, to make one with."""
    where = ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER]
    tools = all(shutil.which(tool) for tool in ("pg_isready", "createdb", "dropdb"))
    if not tools or subprocess.run(["pg_isready", "-q", *where]).returncode != 0:
        yield None
        return
    name = f"trackyard_bench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["createdb", *where, name], check=True)
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        subprocess.run(["dropdb", "--force", *where, name], check=True)


def run(events: int = 50_000, batch: int = 5_000, pg: str | None = None) -> dict[str, Any]:
    """Load ``events`` into each warehouse: ``{"duckdb": figures, "postgresql": figures or a
    "skipped" reason}``; ``pg`` names a database to use as it is (else a scratch one)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), durability="process")
        asyncio.run(_fill(settings, events))
        out: dict[str, Any] = {"duckdb": _measure(settings, None, batch)}
        with contextlib.nullcontext(pg) if pg else scratch_database() as dsn:
            out["postgresql"] = (
                {"skipped": "no PostgreSQL"} if dsn is None else _measure(settings, dsn, batch)
            )
    return out


def describe(name: str, figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"{name:>10}: skipped: {figures['skipped']}"
    return (
        f"{name:>10}: {figures['events']} events in {figures['seconds']:.2f} s = "
        f"{figures['events_per_s']:,} events/s, lag {figures['lag_at_end']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--pg", default=os.environ.get("TRACKYARD_BENCH_PG"), help="a PostgreSQL DSN")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures = run(args.events, args.batch, args.pg)
    if args.json:
        print(msgspec.json.encode(figures).decode())
        return
    for name, row in figures.items():
        print(describe(name, row))


if __name__ == "__main__":
    main()

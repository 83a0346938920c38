"""How fast the warehouse loader loads a prepared log into DuckDB and into PostgreSQL.

Fills a fresh store with track events shaped like `make bench`'s (plus an identify every
tenth event), then times `sync`, the loader's loop, over the whole log for each warehouse
and prints events per second and the lag left at the end (0 when the load caught up).
`python bench/warehouse.py [--events N] [--batch N] [--pg postgresql://...]`; without
`--pg` (or `TRACKYARD_BENCH_PG`) only DuckDB is measured. Not part of `make bench` yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import msgspec

from bench.consumer import event as track_event
from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.sqlite.store import SQLiteStore
from trackyard.warehouse import WarehouseSink, sync


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


def _measure(settings: Settings, url: str | None, batch: int) -> tuple[float, int, int]:
    store = SQLiteStore(settings, writer=False)
    sink = WarehouseSink.open(url, settings.data_dir)
    try:
        sink.reset()
        started = time.perf_counter()
        loaded = sync(store, sink, batch=batch)
        elapsed = time.perf_counter() - started
        return elapsed, loaded, store.head_seq() - sink.position()
    finally:
        sink.close()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--pg", default=os.environ.get("TRACKYARD_BENCH_PG"), help="a PostgreSQL DSN")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), durability="process")
        asyncio.run(_fill(settings, args.events))
        targets: list[tuple[str, str | None]] = [("duckdb", None)]
        if args.pg:
            targets.append(("postgresql", args.pg))
        for name, url in targets:
            elapsed, loaded, lag = _measure(settings, url, args.batch)
            rate = loaded / elapsed
            print(f"{name:>10}: {loaded} events in {elapsed:.2f} s = {rate:,.0f} events/s, lag {lag}")


if __name__ == "__main__":
    main()

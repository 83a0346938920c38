"""Appends to a PostgreSQL log, partitioned or not: ``python -m bench.pg_partitions``.

Appends Segment-like batches of 100 events from 8 concurrent appenders through the log's
writer (in this process, a fresh database on the machine's server, the default durable
mode) and prints events/s, p50/p99 per append, and the CPU per event of this process and
of the database's backends (read from ``/proc``). Run it with the old code
(``PYTHONPATH=/work/main/src``) and the new one back to back to compare: it runs on both.
With ``--drop``, a second thread runs retention passes (dropping the oldest partitions)
while the appends go on, to show what ``DROP TABLE`` costs the writer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import open_backends

_ADMIN = os.environ.get("TRACKYARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"trackyard_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield _ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def _backends_of(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def _batch(first: int, rng: random.Random) -> list[EventRecord]:
    now = int(time.time() * 1000)
    return [
        EventRecord(
            1,
            f"m-{i}",
            "track",
            now,
            json.dumps(
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": f"user-{rng.randrange(5000)}",
                    "messageId": f"m-{i}",
                    "properties": {"price": round(rng.uniform(1, 500), 2), "sku": f"s-{rng.randrange(900)}"},
                    "timestamp": "2026-01-01T12:00:00.000Z",
                }
            ).encode(),
        )
        for i in range(first, first + 100)
    ]


def run(events: int, width: int, drop: bool) -> dict[str, Any]:
    with _database() as dsn, TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), state_url=dsn, warehouse_url="off")
        partitioned = any(f.name == "log_partition_events" for f in dataclasses.fields(Settings))
        if partitioned:
            settings = dataclasses.replace(settings, log_partition_events=width)
        backends = open_backends(settings, writer=True)
        rng = random.Random(1)
        batches = [_batch(first, rng) for first in range(0, events, 100)]
        latencies: list[float] = []
        stop = threading.Event()
        dropped: list[int] = []
        dropper = None
        if drop and partitioned:
            dropper = threading.Thread(target=_drop_loop, args=(settings, stop, dropped))

        async def appender(mine: list[list[EventRecord]]) -> None:
            for batch in mine:
                started = time.perf_counter()
                await backends.log.append(batch, [])
                latencies.append(time.perf_counter() - started)

        async def all_of_them() -> None:
            await asyncio.gather(*(appender(batches[k::8]) for k in range(8)))

        # Warm up (connections, the first partitions), then measure.
        asyncio.run(backends.log.append(_batch(10**9, rng), []))
        pids = _backends_of(dsn)
        cpu0, pg0, wall0 = time.process_time(), _cpu_of(pids), time.perf_counter()
        if dropper is not None:
            dropper.start()
        try:
            asyncio.run(all_of_them())
        finally:
            stop.set()
            if dropper is not None:
                dropper.join()
        wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, _cpu_of(pids) - pg0
        backends.close()
    latencies.sort()
    return {
        "partitioned": partitioned,
        "partition_events": width if partitioned else None,
        "dropping": dropper is not None,
        "dropped_events": sum(dropped),
        "events": events,
        "events_per_s": round(events / wall),
        "append_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "append_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "cpu_us_per_event": round(cpu / events * 1e6, 2),
        "pg_writer_cpu_us_per_event": round(pg / events * 1e6, 2),
    }


def _drop_loop(settings: Settings, stop: threading.Event, dropped: list[int]) -> None:
    from trackyard.retention.policy import Policy, run_pass
    from trackyard.storage.factory import open_maintenance

    backends = open_backends(settings)
    maintenance = open_maintenance(settings)
    try:
        while not stop.wait(0.5):
            policy = Policy(max_bytes=1, ignore_consumers=True, rejects_seconds=0)
            dropped.append(run_pass(backends, maintenance, policy).dropped_events)
    finally:
        maintenance.close()
        backends.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partition-events", type=int, default=50_000)
    parser.add_argument("--drop", action="store_true", help="run retention passes beside the appends")
    parser.add_argument("--json", type=Path, help="also append the result to this JSON-lines file")
    args = parser.parse_args()
    result = run(args.events, args.partition_events, args.drop)
    print(json.dumps(result))
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

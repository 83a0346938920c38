"""Ingest with and without compaction running beside it: ``python -m bench.compaction``.

Appends Segment-like batches of 100 events through the store's writer (in this process,
real files, the default durable mode), once alone and once while a second process
compacts the cold log as the ``retention`` consumer does, and prints the writer's wall
time and this process's CPU per event for both, with the bytes on disk per event (the
write-ahead log aside: it is read at the end of the load, before any pause lets the
retention consumer truncate it; ``make bench`` counts it).

The first ``--warm-up`` events are not measured: by then the writer flushes dedup keys
as fast as they come, whatever sends them to disk (their age or a full memory). Measured
from the start, a run would favour whichever flushes later, since the keys still in
memory at its end (up to 262,144) have not been paid for yet. ``--dedup-flush-seconds``
compares the flush by age with the flush on a full memory alone (0), in alternate runs.
The figures are also written to ``bench/results/compaction-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import open_backends, open_maintenance

_COMPACTOR = """
import sys, time
from pathlib import Path
from trackyard.config import Settings
from trackyard.storage.factory import open_maintenance
m = open_maintenance(Settings(data_dir=Path(sys.argv[1])))
print("ready", flush=True)
moved = 0
while True:
    events = m.compact()
    moved += events
    if not events:
        m.reclaim()
        time.sleep(0.2)
"""


def _event(i: int, rng: random.Random) -> bytes:
    return json.dumps(
        {
            "type": "track",
            "event": rng.choice(["Product Viewed", "Order Completed", "Signed Up"]),
            "userId": f"user-{rng.randrange(5000)}",
            "anonymousId": f"{rng.getrandbits(64):016x}",
            "messageId": f"m-{i}",
            "properties": {"price": round(rng.uniform(1, 500), 2), "sku": f"sku-{rng.randrange(900)}"},
            "context": {"page": {"path": "/products/1042"}, "library": {"name": "analytics.js"}},
            "timestamp": "2026-01-01T12:00:00.000Z",
        },
        separators=(",", ":"),
    ).encode()


RESULTS = Path(__file__).resolve().parent / "results"


def run(events: int, compaction: bool, warm_up: int = 0, flush_seconds: int = 2) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="trackyard-compaction-"))
    settings = Settings(data_dir=data, dedup_flush_seconds=flush_seconds)
    backends = open_backends(settings, writer=True)
    child = None
    if compaction:
        child = subprocess.Popen(
            [sys.executable, "-c", _COMPACTOR, str(data)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    rng = random.Random(1)
    batches = [
        [
            EventRecord(1, f"m-{i}", "track", int(time.time() * 1000), _event(i, rng))
            for i in range(f, f + 100)
        ]
        for f in range(0, warm_up + events, 100)
    ]
    json_bytes = sum(len(e.body) for batch in batches for e in batch)

    async def ingest(part: list[list[EventRecord]]) -> None:
        # Eight requests in flight at a time, as concurrent clients would be.
        for start in range(0, len(part), 8):
            await asyncio.gather(*(backends.log.append(b, []) for b in part[start : start + 8]))

    asyncio.run(ingest(batches[: warm_up // 100]))
    flushes = backends.log.stats()["flushes"]
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(ingest(batches[warm_up // 100 :]))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    flushes = backends.log.stats()["flushes"] - flushes
    if child is not None:
        child.kill()
        child.wait()
    maintenance = open_maintenance(settings)
    extent, usage = maintenance.extent(), maintenance.disk_usage()
    maintenance.close()
    backends.close()
    shutil.rmtree(data, ignore_errors=True)
    store = sum(usage[p] for p in ("log", "dedup", "rejects", "other", "free"))
    stored = warm_up + events
    return {
        "compaction": compaction,
        "dedup_flush_seconds": flush_seconds,
        "warm_up": warm_up,
        "events": events,
        "wall_us_per_event": round(1e6 * wall / events, 2),
        "cpu_us_per_event": round(1e6 * cpu / events, 2),
        "dedup_flushes": flushes,
        "compacted_events": extent.compacted_events,
        "json_bytes_per_event": round(json_bytes / stored, 1),
        "store_bytes_per_event": round(store / stored, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--warm-up", type=int, default=0, help="events ingested first, not measured")
    parser.add_argument(
        "--dedup-flush-seconds",
        type=int,
        action="append",
        help="TRACKYARD_DEDUP_FLUSH_SECONDS of the runs (repeatable: alternate runs; default 2)",
    )
    parser.add_argument("--no-compaction-only", action="store_true", help="only the runs without it")
    parser.add_argument("--rounds", type=int, default=2, help="alternate runs of each (default 2)")
    args = parser.parse_args()
    runs = []
    for _ in range(args.rounds):
        for flush_seconds in args.dedup_flush_seconds or [2]:
            for compaction in (False,) if args.no_compaction_only else (False, True):
                runs.append(run(args.events, compaction, args.warm_up, flush_seconds))
                print(json.dumps(runs[-1]), flush=True)
    out = RESULTS / f"compaction-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1) + "\n")
    print(f"written to {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest with and without compaction running beside it: ``python -m bench.compaction``.

Appends Segment-like batches of 100 events through the store's writer (in this process,
real files, the default durable mode), once alone and once while a second process
compacts the cold log as the ``retention`` consumer does, and prints the writer's wall
time and this process's CPU per event for both, with the bytes on disk per event.
"""

from __future__ import annotations

import argparse
import asyncio
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


def run(events: int, compaction: bool) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="trackyard-compaction-"))
    settings = Settings(data_dir=data)
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
        for f in range(0, events, 100)
    ]
    json_bytes = sum(len(e.body) for batch in batches for e in batch)

    async def ingest() -> None:
        # Eight requests in flight at a time, as concurrent clients would be.
        for start in range(0, len(batches), 8):
            await asyncio.gather(*(backends.log.append(b, []) for b in batches[start : start + 8]))

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(ingest())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if child is not None:
        child.kill()
        child.wait()
    maintenance = open_maintenance(settings)
    extent, usage = maintenance.extent(), maintenance.disk_usage()
    maintenance.close()
    backends.close()
    shutil.rmtree(data, ignore_errors=True)
    store = sum(usage[p] for p in ("log", "dedup", "rejects", "other", "free"))
    return {
        "compaction": compaction,
        "events": events,
        "wall_us_per_event": round(1e6 * wall / events, 2),
        "cpu_us_per_event": round(1e6 * cpu / events, 2),
        "compacted_events": extent.compacted_events,
        "json_bytes_per_event": round(json_bytes / events, 1),
        "store_bytes_per_event": round(store / events, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternate runs of each (default 2)")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for compaction in (False, True):
            print(json.dumps(run(args.events, compaction)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

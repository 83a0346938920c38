"""What one look of the console's live debugger at the log costs the process serving it.

``python -m bench.live_tick``: a fresh SQLite store with a flood of events waiting (more than
one tick reads), then the CPU time of ``LiveTail._tick`` (what a stream does 4 times a
second, in a thread of the HTTP process), without filters and with a user filter that
matches nothing (every row read is decoded), medians of rounds. Run it with
``PYTHONPATH=/work/main/src`` for the code before a change, and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from trackyard.config import Settings
from trackyard.console.live import Filters, LiveTail, _Cursor
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import open_backends


def _flood(settings: Settings, count: int) -> None:
    backends = open_backends(settings, writer=True)
    try:
        source = backends.sources.add_source("flood")
        now = int(time.time() * 1000)
        for first in range(0, count, 100):
            events = [
                EventRecord(
                    source.id,
                    f"m-{i}",
                    "track",
                    now,
                    b'{"type":"track","event":"Flood","userId":"u-%d","messageId":"m-%d",'
                    b'"properties":{"plan":"pro","n":%d},"context":{"ip":"127.0.0.1"}}' % (i, i, i),
                )
                for i in range(first, min(first + 100, count))
            ]
            asyncio.run(backends.log.append(events, []))
    finally:
        backends.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), durability="process")
        _flood(settings, args.events)
        backends = open_backends(settings)
        try:
            tail = LiveTail(backends.log, backends.rejects, backends.sources.sources)
            for name, filters in (("no filters", Filters()), ("user filter", Filters(user="nobody"))):
                rounds = []
                for _ in range(args.rounds):
                    started = time.process_time()
                    for _ in range(args.ticks):
                        tail._tick(_Cursor(0, 0), filters)  # far behind every time: it samples
                    rounds.append((time.process_time() - started) / args.ticks * 1000)
                print(f"{name}: {statistics.median(rounds):.2f} ms of CPU a tick (median of {args.rounds})")
        finally:
            backends.close()


if __name__ == "__main__":
    main()

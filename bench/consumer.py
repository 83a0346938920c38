"""How fast the profile consumer builds profiles from a log, on its own, in-process.

Fills a fresh store with track events shaped like `make bench`'s (by default every event
from a new user, the consumer's dearest case: each creates a profile, an identity and an
event link), then times `catch_up`, the consumer's loop, over the whole log and prints
CPU microseconds per event (``time.process_time``: steadier than wall time on a shared
machine), split into reading the log, the builder's Python work and the profile store's
SQL, and the process's peak RSS while it runs (the profile store's page cache,
``TRACKYARD_PROFILES_CACHE_SIZE``, is most of what grows). `python bench/consumer.py
[--events N] [--users N]`; figures are quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from trackyard.config import Settings
from trackyard.profiles.consumer import catch_up
from trackyard.profiles.settings import ProfileSettings
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import open_backends


def event(n: int, users: int) -> bytes:
    """The canonical event the ingest path stores for `make bench`'s `/v1/batch` item ``n``."""
    return msgspec.json.encode(
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": f"user-{n % users if users else n}",
            "messageId": f"m-{n}",
            "properties": {"product_id": "sku-1042", "price": 129.5, "currency": "EUR", "path": "/p/1042"},
            "context": {
                "library": {"name": "bench", "version": "1.0"},
                "page": {"url": "https://shop.example/"},
            },
            "timestamp": "2026-01-01T12:00:00.000Z",
            "sentAt": "2026-01-01T12:00:01.000Z",
            "receivedAt": "2026-01-01T12:00:01.000Z",
            "source": {"id": 1, "format": "segment"},
        }
    )


async def fill(settings: Settings, events: int, users: int) -> None:
    backends = open_backends(settings, writer=True)
    try:
        for start in range(0, events, 100):
            numbers = range(start, min(events, start + 100))
            records = [EventRecord(1, f"m-{n}", "track", 0, event(n, users)) for n in numbers]
            await backends.log.append(records, [])
    finally:
        backends.close()


def timing(target: Any, name: str, totals: dict[str, float], label: str) -> None:
    """Wrap ``target.name`` (on this instance) so that the time spent in it adds up under ``label``."""
    inner: Callable[..., Any] = getattr(target, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.process_time() - start

    setattr(target, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events in the log (default 100,000)")
    parser.add_argument(
        "--users", type=int, default=0, help="distinct users (default 0: a new one per event)"
    )
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="trackyard-consumer-"))
    settings = dataclasses.replace(Settings.from_env(), data_dir=data)
    asyncio.run(fill(settings, args.events, args.users))

    totals: dict[str, float] = {}
    backends = open_backends(settings)
    profiles = backends.profiles()
    timing(backends.log, "read_events", totals, "read the log")
    for name in ("owners", "load", "commit"):
        timing(profiles, name, totals, "profile store SQL")
    rest_kb = _reset_peak_rss()
    try:
        start, wall = time.process_time(), time.perf_counter()
        # The consumer types its log as a whole Store but only reads the log.
        applied = catch_up(backends.log, profiles, ProfileSettings.from_env())
        elapsed, wall = time.process_time() - start, time.perf_counter() - wall
    finally:
        backends.close()
    totals["builder (decode, facts, identity graph)"] = elapsed - sum(totals.values())
    who = f"{args.users:,} users" if args.users else "a new user per event"
    print(
        f"{applied:,} events ({who}) in {elapsed:.2f} s of CPU ({wall:.2f} s wall):"
        f" {applied / elapsed:,.0f} events/s per core"
    )
    for label, seconds in totals.items():
        print(f"  {label:42s} {seconds / applied * 1e6:6.1f} µs/event")
    print(f"  {'total':42s} {elapsed / applied * 1e6:6.1f} µs/event")
    print(f"peak RSS while it ran {_status_kb('VmHWM') / 1024:.1f} MB (before it: {rest_kb / 1024:.1f} MB)")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> int:
    """Start the peak RSS again from now (Linux: ``clear_refs`` 5); the RSS now, in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


if __name__ == "__main__":
    main()

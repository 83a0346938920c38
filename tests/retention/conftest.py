"""Stores with many realistic events, some received long ago, for compaction and retention tests."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.storage.conformance.test_maintenance import maintenance  # noqa: F401 (a fixture)
from trackyard.config import Settings
from trackyard.consumers.registry import CONSUMERS
from trackyard.storage.base import EventRecord, LogMaintenance, StoredEvent
from trackyard.storage.factory import Backends, open_backends

DAY_MS = 86_400_000
_PAGES = ["/", "/pricing", "/products/1042", "/checkout", "/blog/launch"]
_EVENTS = ["Product Viewed", "Order Completed", "Signed Up", "Cart Updated"]


def event_json(i: int, rng: random.Random) -> bytes:
    """A Segment-like canonical event with values that differ from event to event."""
    return msgspec.json.encode(
        {
            "type": "track",
            "event": rng.choice(_EVENTS),
            "userId": f"user-{rng.randrange(5000)}",
            "anonymousId": f"{rng.getrandbits(64):016x}",
            "messageId": f"m-{i}",
            "properties": {"price": round(rng.uniform(1, 500), 2), "sku": f"sku-{rng.randrange(900)}"},
            "context": {"page": {"path": rng.choice(_PAGES)}, "library": {"name": "analytics.js"}},
            "timestamp": "2026-01-01T12:00:00.000Z",
        }
    )


def write(backends: Backends, count: int, *, start: int = 0, received_ms: int | None = None) -> None:
    """``count`` events (ids m-START ...) in requests of 100, received at ``received_ms`` (now)."""
    rng = random.Random(start)
    at = int(time.time() * 1000) if received_ms is None else received_ms
    for first in range(start, start + count, 100):
        ids = range(first, min(first + 100, start + count))
        events = [EventRecord(1, f"m-{i}", "track", at, event_json(i, rng)) for i in ids]
        asyncio.run(backends.log.append(events, []))


def everything(backends: Backends) -> list[StoredEvent]:
    """The whole log, read in consumer-sized pages."""
    events: list[StoredEvent] = []
    while page := backends.log.read_events(after=events[-1].seq if events else 0, limit=1000):
        events += page
    return events


def compact_all(log_maintenance: LogMaintenance) -> int:
    moved = 0
    while events := log_maintenance.compact():
        moved += events
    return moved


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Few dedup keys in memory, so that the writer flushes them as it would under a long
    # run: compaction takes only rows whose keys are flushed (or retention's old rows).
    # The warehouse loader off (it is on by default): these tests run the profile consumer.
    return Settings(
        data_dir=tmp_path / "data", durability="process", dedup_memory_keys=4096, warehouse_url="off"
    )


@pytest.fixture
def backends(settings: Settings) -> Iterator[Backends]:
    opened = open_backends(settings, writer=True)
    try:
        yield opened
    finally:
        opened.close()


def profiles_read(backends: Backends, batches: int | None = None) -> int:
    """Run the real profile consumer ``batches`` batches (of 1,000), or until caught up; its position."""
    runner = CONSUMERS["profiles"].open_runner(backends)
    try:
        if batches is None:
            runner.catch_up()
        for _ in range(batches or 0):
            runner.step()
        return runner.position()
    finally:
        runner.sink.close()


def run_retention_consumer(backends: Backends, done: Callable[[], bool], failure: str) -> None:
    """Run the real retention consumer in a thread until ``done()``; fail with ``failure`` after 60 s."""
    runner = CONSUMERS["retention"].open_runner(backends)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, failure
            time.sleep(0.1)
    finally:
        runner.stop.set()
        thread.join()
        runner.sink.close()

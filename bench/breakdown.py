"""Where one event's time goes on the Segment batch path, step by step, in-process.

Runs the real code (decode, normalize, encode, the store's commit on a real SQLite file in
full durability) on 200 batches of 100 events and prints microseconds per event for each
step. `python bench/breakdown.py`; figures are quoted in docs/performance.md.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trackyard.config import Settings
from trackyard.storage._group_commit import Job
from trackyard.storage.base import EventRecord
from trackyard.storage.sqlite import store as store_sqlite
from trackyard.storage.sqlite._dedup import SQLiteDedup
from trackyard.storage.sqlite._writer import Writer
from trackyard.wire import segment as wire
from trackyard.wire._json import decode_item
from trackyard.wire._segment_typed import normalize_raw

EVENT = {
    "type": "track",
    "event": "Product Viewed",
    "properties": {"product_id": "sku-1042", "price": 129.5, "currency": "EUR", "path": "/products/1042"},
    "context": {"library": {"name": "bench", "version": "1.0"}, "page": {"url": "https://shop.example/p/1"}},
}
BATCHES, PER_BATCH = 200, 100
SCAN = "scan the envelope (msgspec.Raw items)"


def body(n: int) -> bytes:
    items = [
        {
            **EVENT,
            "userId": f"user-{i}",
            "messageId": str(uuid.uuid4()),
            "timestamp": f"2026-01-01T12:00:{i % 60:02d}Z",
        }
        for i in range(n)
    ]
    return json.dumps({"batch": items, "sentAt": "2026-01-01T12:01:00.000Z"}).encode()


def timed(label: str, step: Callable[[], Any], results: dict[str, float]) -> Any:
    start = time.perf_counter()
    value = step()
    results[label] = (time.perf_counter() - start) / (BATCHES * PER_BATCH) * 1e6
    return value


def main() -> None:
    bodies = [body(PER_BATCH) for _ in range(BATCHES)]
    receipt = wire.Receipt(
        route="/v1/batch",
        received_at_us=1_767_268_861_000_000,
        client_ip="127.0.0.1",
        write_key="k",
        source_tag={"id": 1, "name": "bench", "format": "segment", "route": "/v1/batch"},
        sent_at="2026-01-01T12:01:00.000Z",
    )
    now_ms = int(time.time() * 1000)  # dedup buckets go by receipt time
    reference: dict[str, float] = {}
    envelopes = timed(SCAN, lambda: [wire.decode_envelope(b) for b in bodies], reference)
    items = timed(
        "decode each item", lambda: [[decode_item(r) for r in e.batch] for e in envelopes], reference
    )
    normalized = timed(
        "validate and enrich (normalize)",
        lambda: [[wire.normalize(i, None, receipt) for i in b] for b in items],
        reference,
    )
    timed(
        "encode, build the record",
        lambda: [[EventRecord(1, m, k, now_ms, wire.encode(e)) for m, k, e in batch] for batch in normalized],
        reference,
    )
    # The typed fast path, which the routes take for plain calls, does those three steps in one.
    fast = {SCAN: reference[SCAN]}
    typed = timed(
        "typed: decode, validate, enrich, encode in one",
        lambda: [[normalize_raw(r, None, receipt) for r in e.batch] for e in envelopes],
        fast,
    )
    records = [[EventRecord(1, m, k, now_ms, body) for m, k, body in filter(None, batch)] for batch in typed]
    assert sum(map(len, records)) == BATCHES * PER_BATCH, "every bench call takes the fast path"
    commit: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        # The SQLite writer's commit itself, so this names the backend's internals on purpose.
        store = store_sqlite.SQLiteStore(settings, writer=False)
        conn = store_sqlite.connect(store_sqlite.database_path(settings.data_dir), "full")
        dedup = SQLiteDedup(conn, settings.dedup_window_seconds, settings.dedup_memory_keys)
        writer = Writer(conn, dedup, settings)
        timed(
            "commit: one log row + dedup per request, fsync",
            lambda: [writer._commit([Job(r, [])]) for r in records],
            commit,
        )
        store.close()
    for name, steps in (("reference path", reference), ("typed fast path", fast)):
        print(f"{name}:")
        for label, value in {**steps, **commit}.items():
            print(f"  {label:52s} {value:6.2f} µs/event")
        total = sum(steps.values()) + sum(commit.values())
        print(f"  {'total':52s} {total:6.2f} µs/event  (~{1e6 / total:,.0f} events/s on one core)")


if __name__ == "__main__":
    main()

"""The ingest pipeline in-process, on a real SQLite store: policies, and what is kept when refused.

The routes' tests (tests/http/routes/) check the same through a real server; these check
the pipeline's rules where a subprocess adds nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from trackyard.config import Settings
from trackyard.errors import IngestError
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import MAX_KEPT_BYTES, Accepted, Incoming, accept
from trackyard.storage.base import AppendResult, EventRecord, RejectRecord
from trackyard.storage.sqlite.store import SQLiteStore
from trackyard.wire.base import Format
from trackyard.wire.koala import PROFILE_ROUTE, KoalaBatch
from trackyard.wire.segment_requests import SegmentBatch
from trackyard.wire.vitally import VitallyBatch


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(Settings(data_dir=tmp_path))
    store.add_source("shop", write_key="key-1")
    yield store
    store.close()


def run(store: SQLiteStore, fmt: Format[Any], incoming: Incoming) -> Accepted:
    collector = Collector(store, store, Settings(data_dir=Path(".")))
    return asyncio.run(accept(collector, fmt, incoming))


def refused(store: SQLiteStore, fmt: Format[Any], incoming: Incoming) -> IngestError:
    with pytest.raises(IngestError) as caught:
        run(store, fmt, incoming)
    return caught.value


SEGMENT = SegmentBatch(max_event_bytes=32 * 1024, max_batch_events=2500)


def test_a_segment_batch_stores_the_valid_items_and_keeps_the_invalid_one(store: SQLiteStore) -> None:
    body = {
        "writeKey": "key-1",
        "batch": [
            {"type": "track", "userId": "u", "event": "A"},
            {"type": "track", "userId": "u", "writeKey": "key-1"},
            {"type": "identify", "userId": "u"},
        ],
    }
    accepted = run(store, SEGMENT, Incoming("/v1/batch", json.dumps(body).encode()))
    assert [(index, error.code) for index, error in accepted.rejected] == [(1, "event_not_defined")]
    assert [event.type for event in store.read_events()] == ["track", "identify"]
    (reject,) = store.read_rejects()
    assert (reject.index, reject.code, reject.route) == (1, "event_not_defined", "/v1/batch")
    assert json.loads(reject.body) == {"type": "track", "userId": "u", "writeKey": "[redacted]"}


def test_koala_refuses_the_whole_request_on_its_first_bad_entry(store: SQLiteStore) -> None:
    body = json.dumps(
        {
            "profile_id": "p1",
            "events": [{"type": "track", "event": "ok"}, {"type": "track"}, {"type": "nope"}],
        }
    ).encode()
    error = refused(store, KoalaBatch("profile"), Incoming(PROFILE_ROUTE, body, path_key="key-1"))
    assert (error.code, error.of_event) == ("missing_event", True)
    assert store.read_events() == []
    (reject,) = store.read_rejects()
    assert (reject.index, reject.code, reject.body) == (None, "missing_event", body)


def test_a_vitally_batch_with_one_bad_message_keeps_every_message(store: SQLiteStore) -> None:
    good = {
        "type": "track",
        "userId": "u",
        "accountId": "a",
        "event": "E",
        "properties": {},
        "messageId": "m",
    }
    bad = {"type": "track", "userId": "u"}
    body = json.dumps([good, bad]).encode()
    error = refused(store, VitallyBatch(32 * 1024), Incoming("/analytics/v1/batch", body, "Basic key-1"))
    assert error.code == "invalid_batch" and [e["index"] for e in error.errors] == [1]
    assert store.read_events() == []
    assert [(r.index, r.code) for r in store.read_rejects()] == [(0, "batch_refused"), (1, "missing_field")]


def test_a_refused_body_is_kept_for_a_key_found_in_it_and_cut_at_the_bound(store: SQLiteStore) -> None:
    body = json.dumps(
        {"writeKey": "key-1", "batch": "not a list", "pad": "x" * (2 * MAX_KEPT_BYTES)}
    ).encode()
    error = refused(store, SEGMENT, Incoming("/v1/batch", body))
    assert error.code == "invalid_batch"
    (reject,) = store.read_rejects()
    assert len(reject.body) == MAX_KEPT_BYTES and reject.body.startswith(b'{"writeKey": "[redacted]"')
    assert reject.message.endswith(f"(The payload had {len(body):,} bytes; the first 65,536 are kept.)")


def test_a_refusal_for_no_known_key_is_not_kept(store: SQLiteStore) -> None:
    error = refused(store, SEGMENT, Incoming("/v1/batch", b'{"writeKey": "stranger", "batch": {}}'))
    assert error.code == "invalid_batch"
    error = refused(store, SEGMENT, Incoming("/v1/batch", b"{not json", "Basic c3RyYW5nZXI6"))
    assert error.code == "invalid_json"
    assert store.read_rejects() == []


def test_the_request_lets_go_of_its_body_while_it_waits_for_the_commit(store: SQLiteStore) -> None:
    """Under overload the requests waiting for the writer are most of a worker's memory:
    what they need then is their events, not the body (nor its items, views of it)."""
    items = [{"type": "track", "userId": "u", "event": "A", "messageId": f"m-{i}"} for i in range(100)]
    body = json.dumps({"writeKey": "key-1", "batch": items}).encode()
    incoming = Incoming("/v1/batch", body)
    collector = Collector(store, store, Settings(data_dir=Path(".")))
    store_commit = collector.commit
    held: list[tuple[bytes, int]] = []

    async def commit(events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        held.append((incoming.body, sys.getrefcount(body)))
        return await store_commit(events, rejects)

    collector.commit = commit  # type: ignore[method-assign]
    unshared = sys.getrefcount(body) - 1  # this test's own reference, and the call's
    accepted = asyncio.run(accept(collector, SEGMENT, incoming))
    assert held == [(b"", unshared)]
    assert accepted.rejected == [] and store.head_seq() == 100

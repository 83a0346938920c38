"""Refusals for wrong credentials are kept as rejects of no source, and a flood keeps few.

In-process through the real pipeline on a real store, so that a flood of thousands of
requests takes a moment; the bound's clock is a counter the test moves, so the windows
are exact whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.errors import IngestError
from trackyard.ingest.auth_failures import PER_MINUTE, AuthFailures, fingerprint
from trackyard.ingest.collector import Collector
from trackyard.ingest.pipeline import Incoming, accept
from trackyard.storage.base import NO_SOURCE, StoredReject
from trackyard.storage.factory import Backends, open_backends
from trackyard.wire.segment_requests import SegmentBatch

_SEGMENT = SegmentBatch(max_event_bytes=32 * 1024, max_batch_events=2500)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(Settings(data_dir=tmp_path), writer=True)
    opened.sources.add_source("shop", write_key="good-key-0123456789")
    yield opened
    opened.close()


def _flood(backends: Backends, bound: AuthFailures, requests: list[tuple[str, str]]) -> None:
    """One request per (client IP, key) in turn, each refused with 401 as it should be."""
    collector = Collector(backends.log, backends.sources, backends.settings)
    collector.auth_failures = bound
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "E"}]}'

    async def send_all() -> None:
        for ip, key in requests:
            incoming = Incoming("/v1/batch", body, f"Basic {_basic(key)}", client_ip=ip)
            with pytest.raises(IngestError) as refused:
                await accept(collector, _SEGMENT, incoming)
            assert refused.value.code == "invalid_write_key"

    asyncio.run(send_all())


def _basic(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


def _kept(backends: Backends) -> list[StoredReject]:
    return backends.rejects.read_rejects(0, 100_000)


def test_one_client_and_key_is_kept_once_in_ten_seconds(backends: Backends) -> None:
    clock = Clock()
    bound = AuthFailures(clock=clock)
    key = "wrong-key-abcdefghijkl"
    _flood(backends, bound, [("10.0.0.1", key)] * 500)
    (kept,) = _kept(backends)
    assert (kept.source_id, kept.code, kept.route) == (NO_SOURCE, "invalid_write_key", "/v1/batch")
    assert json.loads(kept.body) == {"key": f"wron…{fingerprint(key)[-8:]}", "client_ip": "10.0.0.1"}
    assert key not in kept.message and key.encode() not in kept.body
    clock.now += 9.9
    _flood(backends, bound, [("10.0.0.1", key)] * 10)
    assert len(_kept(backends)) == 1
    # Another client with the same key, or the same client with another key, is kept at once.
    _flood(backends, bound, [("10.0.0.2", key), ("10.0.0.1", "other-key-abcdefghijkl")])
    assert len(_kept(backends)) == 3
    clock.now += 0.2  # 10.1 s after the first
    _flood(backends, bound, [("10.0.0.1", key)] * 10)
    assert len(_kept(backends)) == 4


def test_a_flood_of_distinct_keys_and_clients_keeps_at_most_the_cap_a_minute(backends: Backends) -> None:
    clock = Clock()
    bound = AuthFailures(clock=clock)
    strangers = [(f"10.0.{i // 250}.{i % 250}", f"guess-{i:06d}-abcdef") for i in range(3000)]
    _flood(backends, bound, strangers)
    assert len(_kept(backends)) == PER_MINUTE
    clock.now += 59.0
    _flood(backends, bound, strangers[:100])
    assert len(_kept(backends)) == PER_MINUTE
    clock.now += 1.0  # a new minute
    _flood(backends, bound, strangers)
    assert len(_kept(backends)) == 2 * PER_MINUTE


def test_a_right_key_stores_no_reject(backends: Backends) -> None:
    collector = Collector(backends.log, backends.sources, backends.settings)
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "E"}]}'
    incoming = Incoming("/v1/batch", body, f"Basic {_basic('good-key-0123456789')}", client_ip="10.0.0.1")
    asyncio.run(accept(collector, _SEGMENT, incoming))
    assert _kept(backends) == []
    assert backends.log.head_seq() == 1


def test_fingerprints_never_hold_a_short_key() -> None:
    assert fingerprint(None) == "none"
    assert fingerprint("abc").startswith("…") and "abc" not in fingerprint("abc")
    long = "abcdefghijklmnop"
    assert fingerprint(long).startswith("abcd…") and len(fingerprint(long)) == 13
    assert fingerprint(long) != fingerprint(long + "q")

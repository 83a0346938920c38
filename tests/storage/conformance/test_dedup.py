"""Dedup, through EventLog.append: a (source, messageId) within the window is stored once.

Wherever a backend catches duplicates (fused into its log, or a DedupIndex beside it),
what a client sees is the same: the duplicate is acknowledged and not stored again.
"""

from __future__ import annotations

import asyncio

from tests.storage.conformance.conftest import append, event, reopened
from trackyard.storage.factory import Backends


def _ids(backends: Backends) -> list[tuple[int, bytes]]:
    return [(e.source_id, e.body) for e in backends.log.read_events()]


def test_a_duplicate_within_one_request_is_stored_once(backends: Backends) -> None:
    result = append(backends, [event("a"), event("b"), event("a")])
    assert (result.stored, result.duplicates) == (2, 1)
    assert _ids(backends) == [(1, event("a").body), (1, event("b").body)]


def test_a_retried_request_is_stored_once(backends: Backends) -> None:
    append(backends, [event("a"), event("b")])
    again = append(backends, [event("a"), event("b"), event("c")])
    assert (again.stored, again.duplicates) == (1, 2)
    assert len(backends.log.read_events()) == 3


def test_dedup_is_per_source(backends: Backends) -> None:
    first = append(backends, [event("a", source_id=1)])
    second = append(backends, [event("a", source_id=2)])
    assert (first.stored, second.stored) == (1, 1)
    assert [source for source, _ in _ids(backends)] == [1, 2]


def test_dedup_survives_a_reopen(backends: Backends) -> None:
    append(backends, [event("a"), event("b", source_id=2)])
    with reopened(backends) as again:
        result = append(again, [event("a"), event("b", source_id=2), event("b")])
        assert (result.stored, result.duplicates) == (1, 2)
        assert len(again.log.read_events()) == 3


def test_requests_in_flight_together_share_dedup(backends: Backends) -> None:
    async def together() -> list[int]:
        results = await asyncio.gather(*(backends.log.append([event("same")], []) for _ in range(20)))
        return [r.stored for r in results]

    assert sum(asyncio.run(together())) == 1
    assert len(backends.log.read_events()) == 1

"""EventLog: append, read after a cursor, filters, head, and durability across a reopen."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.conformance.conftest import append, event, reopened
from trackyard.errors import StoreUnavailable
from trackyard.storage.factory import Backends, open_backends


def test_an_empty_log_has_head_0_and_nothing_to_read(backends: Backends) -> None:
    assert backends.log.head_seq() == 0
    assert backends.log.read_events() == []


def test_appended_events_read_back_in_order_with_increasing_seqs(backends: Backends) -> None:
    first = append(backends, [event("a"), event("b", kind="identify")])
    second = append(backends, [event("c", kind="page")])
    assert (first.stored, first.duplicates, second.stored) == (2, 0, 1)
    read = backends.log.read_events()
    assert [(e.type, e.source_id) for e in read] == [("track", 1), ("identify", 1), ("page", 1)]
    assert [e.body for e in read] == [
        event(m, kind=k).body for m, k in (("a", "track"), ("b", "identify"), ("c", "page"))
    ]
    seqs = [e.seq for e in read]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    assert backends.log.head_seq() == seqs[-1]


def test_seqs_are_dense(backends: Backends) -> None:
    # Dense seqs make lag (head minus cursor) a count of events. A backend that cannot
    # promise it must say so here and in docs/storage.md.
    append(backends, [event(f"a{i}") for i in range(5)])
    append(backends, [event("b")])
    seqs = [e.seq for e in backends.log.read_events()]
    assert seqs == list(range(seqs[0], seqs[0] + 6))


def test_reading_after_a_cursor_and_with_a_limit_pages_through_the_log(backends: Backends) -> None:
    append(backends, [event(f"m{i}") for i in range(10)])
    append(backends, [event(f"n{i}") for i in range(5)])
    seen: list[int] = []
    cursor = 0
    while page := backends.log.read_events(after=cursor, limit=4):
        assert len(page) <= 4
        assert all(e.seq > cursor for e in page)
        seen += [e.seq for e in page]
        cursor = page[-1].seq
    assert seen == [e.seq for e in backends.log.read_events()]
    assert len(seen) == 15
    # A cursor in the middle of one append's events starts right after it.
    middle = seen[6]
    assert [e.seq for e in backends.log.read_events(after=middle)] == seen[7:]
    assert backends.log.read_events(after=seen[-1]) == []


def test_filters_by_source_and_type(backends: Backends) -> None:
    append(backends, [event("a", 1), event("b", 1, "identify")])
    append(backends, [event("a", 2), event("c", 2, "identify"), event("d", 2)])
    assert [e.source_id for e in backends.log.read_events(source_id=2)] == [2, 2, 2]
    identifies = backends.log.read_events(type="identify")
    assert [(e.source_id, e.type) for e in identifies] == [(1, "identify"), (2, "identify")]
    assert len(backends.log.read_events(source_id=2, type="track")) == 2
    assert len(backends.log.read_events(source_id=2, type="track", limit=1)) == 1
    assert backends.log.read_events(type="alias") == []
    assert backends.log.read_events(source_id=3) == []


def test_appended_events_survive_a_reopen(backends: Backends) -> None:
    append(backends, [event("a"), event("b")])
    before = backends.log.read_events()
    with reopened(backends) as again:
        assert again.log.read_events() == before
        assert again.log.head_seq() == before[-1].seq
        append(again, [event("c")])
        after = again.log.read_events()
    assert after[:2] == before and after[2].seq > before[-1].seq


def test_a_reader_sees_what_a_writer_appended_and_cannot_append(backends: Backends) -> None:
    append(backends, [event("a")])
    reader = open_backends(backends.settings, writer=False)
    try:
        assert [e.seq for e in reader.log.read_events()] == [e.seq for e in backends.log.read_events()]
        with pytest.raises(StoreUnavailable):
            append(reader, [event("b")])
    finally:
        reader.close()


def test_a_writer_pings_and_is_not_saturated_when_idle(backends: Backends) -> None:
    asyncio.run(backends.log.ping())
    assert not backends.log.saturated()


def test_an_append_of_nothing_stores_nothing(backends: Backends) -> None:
    result = append(backends, [])
    assert (result.stored, result.duplicates) == (0, 0)
    assert backends.log.head_seq() == 0

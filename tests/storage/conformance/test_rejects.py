"""RejectStore: what was refused is kept with its reason, read back from a cursor."""

from __future__ import annotations

import time

from tests.storage.conformance.conftest import append, event, reopened
from trackyard.storage.base import RejectRecord
from trackyard.storage.factory import Backends


def reject(source_id: int, code: str, index: int | None = None, body: bytes = b'{"bad":1}') -> RejectRecord:
    return RejectRecord(source_id, int(time.time() * 1000), "/v1/batch", code, f"{code}: why", index, body)


def test_rejects_are_stored_with_route_code_message_index_and_body(backends: Backends) -> None:
    refused = [reject(1, "invalid_event", 3, b"\xff not json"), reject(1, "too_large")]
    append(backends, [event("a")], refused)
    read = backends.rejects.read_rejects()
    assert [(r.source_id, r.received_at_ms, r.route, r.code, r.message, r.index, r.body) for r in read] == [
        (r.source_id, r.received_at_ms, r.route, r.code, r.message, r.index, r.body) for r in refused
    ]
    # The accepted event of the same request is in the log, the rejects are not.
    assert len(backends.log.read_events()) == 1


def test_a_request_with_only_rejects_stores_them(backends: Backends) -> None:
    result = append(backends, [], [reject(1, "invalid_event", 0)])
    assert result.stored == 0
    assert [r.code for r in backends.rejects.read_rejects()] == ["invalid_event"]
    assert backends.log.head_seq() == 0


def test_rejects_read_after_a_cursor_with_a_limit_and_per_source(backends: Backends) -> None:
    append(backends, [], [reject(1, "a"), reject(2, "b")])
    append(backends, [], [reject(1, "c"), reject(2, "d")])
    everything = backends.rejects.read_rejects()
    seqs = [r.seq for r in everything]
    assert [r.code for r in everything] == ["a", "b", "c", "d"]
    assert seqs == sorted(set(seqs))
    assert [r.code for r in backends.rejects.read_rejects(after=seqs[1])] == ["c", "d"]
    assert [r.code for r in backends.rejects.read_rejects(limit=3)] == ["a", "b", "c"]
    assert [r.code for r in backends.rejects.read_rejects(source_id=2)] == ["b", "d"]
    assert [r.code for r in backends.rejects.read_rejects(after=seqs[1], source_id=1)] == ["c"]


def test_rejects_survive_a_reopen(backends: Backends) -> None:
    append(backends, [], [reject(1, "kept")])
    with reopened(backends, writer=False) as again:
        assert [r.code for r in again.rejects.read_rejects()] == ["kept"]

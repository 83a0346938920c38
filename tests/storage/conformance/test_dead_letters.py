"""DeadLetters: events a consumer gave up on, kept whole with their reason, per consumer."""

from __future__ import annotations

from trackyard.storage.base import StoredEvent
from trackyard.storage.factory import Backends, open_backends


def _event(seq: int) -> StoredEvent:
    return StoredEvent(seq, 7, "track", b'{"event":"E%d","bytes":"\\u00e9"}' % seq)


def test_a_dead_letter_keeps_the_event_and_the_reason(backends: Backends) -> None:
    letters = backends.dead_letters()
    assert letters.count("profiles") == 0 and letters.read() == []
    letters.add("profiles", _event(3), "ValueError: bad trait", 5)
    [kept] = letters.read("profiles")
    assert (kept.consumer, kept.seq, kept.source_id, kept.type) == ("profiles", 3, 7, "track")
    assert kept.body == _event(3).body
    assert (kept.reason, kept.attempts) == ("ValueError: bad trait", 5)
    assert kept.failed_at_ms > 0


def test_dead_letters_are_listed_per_consumer_oldest_first_and_paged(backends: Backends) -> None:
    letters = backends.dead_letters()
    for seq in (1, 2, 3):
        letters.add("a", _event(seq), f"r{seq}", 1)
    letters.add("b", _event(9), "rb", 1)
    assert [d.seq for d in letters.read("a")] == [1, 2, 3]
    assert [d.seq for d in letters.read()] == [1, 2, 3, 9]
    first = letters.read("a", limit=2)
    assert [d.seq for d in first] == [1, 2]
    assert [d.seq for d in letters.read("a", after=first[-1].id)] == [3]
    assert (letters.count("a"), letters.count("b"), letters.count("c")) == (3, 1, 0)


def test_dead_letters_survive_reopening(backends: Backends) -> None:
    backends.dead_letters().add("profiles", _event(1), "boom", 2)
    settings = backends.settings
    backends.close()
    reopened = open_backends(settings)
    try:
        assert [d.reason for d in reopened.dead_letters().read("profiles")] == ["boom"]
    finally:
        reopened.close()

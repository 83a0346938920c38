"""The runner over a real SQLite log: cursor commits, at-least-once, backoff, dead letters, lag."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from tests.consumers.conftest import RecordingSink, append
from trackyard.consumers.runner import Backoff, Runner, RunPolicy, mirror_name
from trackyard.storage.base import StoredEvent
from trackyard.storage.factory import Backends, open_backends

_FAST = RunPolicy(batch_size=4, poll_interval=0.01, max_attempts=3, retry=Backoff(0.001, 0.004))


def _runner(backends: Backends, sink: RecordingSink, policy: RunPolicy = _FAST) -> Runner:
    return Runner("test", backends.log, sink, backends.cursors(), backends.dead_letters(), policy)


def _poison(events: Sequence[StoredEvent]) -> bool:
    return any(b"poison" in e.body for e in events)


def test_events_are_delivered_in_order_once_and_the_cursor_follows(backends: Backends) -> None:
    append(backends, [b"{}"] * 10)
    sink = RecordingSink()
    runner = _runner(backends, sink)
    assert runner.lag() == 10
    assert runner.catch_up() == 10
    assert sink.delivered == list(range(1, 11))
    assert sink.batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert backends.cursors().get("test") == 10
    assert runner.lag() == 0
    append(backends, [b"{}"] * 3)
    assert runner.lag() == 3
    assert runner.catch_up() == 3 and sink.delivered[-3:] == [11, 12, 13]


def test_catch_up_until_stops_at_that_seq(backends: Backends) -> None:
    append(backends, [b"{}"] * 10)
    sink = RecordingSink()
    assert _runner(backends, sink).catch_up(until=6) == 6
    assert sink.delivered == [1, 2, 3, 4, 5, 6]


class _Crash(BaseException):
    """The process dying after the sink has done its work and before the runner heard back."""


class _CrashingSink(RecordingSink):
    def deliver(self, events: Sequence[StoredEvent]) -> None:
        super().deliver(events)
        if self.calls == 2:
            raise _Crash


def test_a_crash_between_the_sink_and_the_cursor_delivers_the_batch_again(backends: Backends) -> None:
    append(backends, [b"{}"] * 8)
    sink = _CrashingSink()
    with pytest.raises(_Crash):
        _runner(backends, sink).catch_up()
    assert sink.delivered == list(range(1, 9)) and backends.cursors().get("test") == 4
    # The next process starts from the committed cursor: the second batch comes again.
    settings = backends.settings
    backends.close()
    reopened = open_backends(settings)
    try:
        again = RecordingSink()
        assert _runner(reopened, again).catch_up() == 4
        assert again.delivered == [5, 6, 7, 8]  # at least once: nothing skipped
        assert reopened.cursors().get("test") == 8
    finally:
        reopened.close()


def test_a_failing_batch_is_retried_with_doubling_capped_backoff(
    backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    append(backends, [b"{}"] * 3)
    outcomes = iter([True, True])  # fail twice, then succeed
    sink = RecordingSink(fails=lambda _: next(outcomes, False))
    with caplog.at_level(logging.WARNING, "trackyard.consumers"):
        assert _runner(backends, sink).catch_up() == 3
    assert sink.delivered == [1, 2, 3] and sink.calls == 3
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "cannot deliver seq 1" in retries[0]
    assert backends.dead_letters().count("test") == 0
    assert [Backoff(0.5, 30.0).delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize("own_cursor", [False, True], ids=["runner-cursor", "sink-cursor"])
@pytest.mark.parametrize("where", [0, 5, 9])
def test_a_poison_event_goes_to_the_dead_letters_and_the_rest_is_delivered_once(
    backends: Backends, own_cursor: bool, where: int
) -> None:
    bodies = [b'{"n": %d}' % i for i in range(10)]
    bodies[where] = b'{"poison": true}'
    append(backends, bodies)
    sink = RecordingSink(fails=_poison, own_cursor=own_cursor)
    runner = _runner(backends, sink, RunPolicy(batch_size=10, max_attempts=3, retry=Backoff(0.001, 0.004)))
    assert runner.catch_up() == 10
    poison_seq = where + 1
    assert sink.delivered == [seq for seq in range(1, 11) if seq != poison_seq]
    [letter] = backends.dead_letters().read("test")
    assert letter.seq == poison_seq and letter.body == b'{"poison": true}'
    assert letter.reason == f"ValueError: cannot deliver seq {poison_seq}" and letter.attempts == 3
    assert runner.position() == 10 and runner.lag() == 0
    # Nothing is read again: the consumer is past the poison for good.
    assert runner.catch_up() == 0


def test_a_stop_during_backoff_ends_the_run_without_moving_the_cursor(backends: Backends) -> None:
    append(backends, [b"{}"] * 2)
    sink = RecordingSink(fails=lambda _: True)
    runner = _runner(backends, sink, RunPolicy(max_attempts=1000, retry=Backoff(60.0, 60.0)))
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        while sink.calls == 0:  # the first attempt failed; the runner waits 60 s to retry
            thread.join(0.01)
        runner.stop.set()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        runner.stop.set()
        thread.join()
    assert backends.cursors().get("test") == 0 and sink.delivered == []


def test_the_position_of_a_sink_with_its_own_cursor_is_mirrored_wherever_it_moves(
    backends: Backends,
) -> None:
    """The mirror is what the metrics reader takes for a running consumer's position: it
    follows the batches, and a move the sink made itself (a rebuild) before the next read."""
    append(backends, [b"{}"] * 6)
    sink = RecordingSink(own_cursor=True)
    runner = _runner(backends, sink)
    mirror = mirror_name("test")
    assert runner.catch_up() == 6
    assert backends.cursors().get(mirror) == 6 and backends.cursors().get("test") == 0
    sink._position = 2  # the sink went back by itself, as a profile rebuild does
    assert runner.step(until=2) == 0  # nothing to read up to seq 2: the read mirrored it all the same
    assert backends.cursors().get(mirror) == 2
    assert runner.catch_up() == 4 and backends.cursors().get(mirror) == 6

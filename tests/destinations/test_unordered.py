"""Per-user order on and off: what a retry does to the events after it."""

from __future__ import annotations

import pytest

from tests.destinations.conftest import Answer, Receiver, append, poll, tracks
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _order(receiver: Receiver) -> list[str]:
    return [r.json()["messageId"] for r in receiver.delivered()]


def test_with_order_a_retry_holds_back_the_events_after_it(backends: Backends, receiver: Receiver) -> None:
    registry = open_destinations(backends.settings)
    registry.add(Destination("hook", "webhook", receiver.url, batch_size=1))
    append(backends, tracks(4))
    receiver.answer(Answer(500), Answer(503))
    runner = open_runner_for(backends, registry, registry.get("hook"))
    try:
        runner.catch_up()
    finally:
        runner.sink.close()
        registry.close()
    assert _order(receiver) == ["m0", "m1", "m2", "m3"]
    assert len(receiver.requests) == 6  # m0 three times


def test_without_order_a_failing_event_is_parked_durably_and_arrives_late(
    backends: Backends, receiver: Receiver
) -> None:
    registry = open_destinations(backends.settings)
    registry.add(Destination("hook", "webhook", receiver.url, batch_size=1, ordered=False))
    append(backends, tracks(4))
    receiver.answer(Answer(500, body=b"busy"))  # m0's first attempt
    runner = open_runner_for(backends, registry, registry.get("hook"))
    try:
        assert runner.step() == 4
        assert backends.cursors().get("destination:hook") == 4  # the cursor went on past m0
        assert _order(receiver) == ["m1", "m2", "m3"]
        assert registry.retrying("hook") == (1, 1)  # m0, parked after one attempt
    finally:
        runner.sink.close()  # a crash here loses nothing: m0 is parked in the registry
    again = open_runner_for(backends, registry, registry.get("hook"))
    try:
        poll(lambda: (again.step(), _order(receiver))[1] == ["m1", "m2", "m3", "m0"])
        assert registry.retrying("hook") == (0, 0)
        assert registry.status("hook")[0] == 4
    finally:
        again.sink.close()
        registry.close()


def test_without_order_a_parked_event_goes_to_the_dead_letters_past_the_retry_time(
    backends: Backends, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKYARD_DESTINATION_RETRY_SECONDS", "0.3")
    registry = open_destinations(backends.settings)
    registry.add(Destination("hook", "webhook", receiver.url, batch_size=1, ordered=False))
    append(backends, tracks(2))
    receiver.answer(*[Answer(503, body=b"down")] * 1000)
    runner = open_runner_for(backends, registry, registry.get("hook"))
    dead = backends.dead_letters()
    try:
        poll(lambda: (runner.step(), dead.count("destination:hook"))[1] == 2)
        assert registry.retrying("hook") == (0, 0)
        (first, _) = dead.read("destination:hook")
        assert first.reason.startswith("HTTP 503: down (retried for") and first.attempts > 1
    finally:
        runner.sink.close()
        registry.close()

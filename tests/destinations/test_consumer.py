"""The destinations consumer: a runner a destination, so one that is down delays no other."""

from __future__ import annotations

import threading

import pytest

from tests.destinations.conftest import Answer, Receiver, append, poll, tracks
from trackyard.destinations.consumer import DestinationsRunner
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def test_a_down_destination_never_delays_another_and_changes_apply_without_a_restart(
    backends: Backends, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKYARD_DESTINATION_TIMEOUT_SECONDS", "5")
    down = Receiver()
    down.answer(*[Answer(503, hang=0.2)] * 10_000)  # slow and failing, for as long as the test runs
    registry = open_destinations(backends.settings)
    registry.add(Destination("down", "webhook", down.url))
    registry.add(Destination("up", "webhook", receiver.url, batch_size=10))
    manager = DestinationsRunner(backends)
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    try:
        append(backends, tracks(50))
        poll(lambda: sum(len(r.json()) for r in receiver.delivered()) == 50)
        cursors = backends.cursors()
        assert cursors.get("destination:up") == 50
        assert cursors.get("destination:down") == 0
        assert manager.position() == 0  # the manager reports the one furthest behind

        registry.add(Destination("late", "webhook", receiver.url, batch_size=50))
        poll(lambda: cursors.get("destination:late") == 50)  # picked up while running

        registry.set_enabled("up", False)
        poll(lambda: "up" not in manager._running)
        append(backends, tracks(5, start=50))
        poll(lambda: cursors.get("destination:late") == 55)
        assert cursors.get("destination:up") == 50  # disabled: it waits where it was
    finally:
        manager.stop.set()
        thread.join(20)
        manager.sink.close()
        down.close()
        registry.close()
    assert not thread.is_alive()
    assert backends.cursors().get("destination:down") == 0  # the stop lost nothing of it

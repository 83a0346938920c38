"""The destinations family: a process a destination, so one that is down, hung or killed
delays no other; destinations added, changed, disabled or removed apply without a restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.destinations.conftest import Answer, Receiver, append, poll, tracks
from trackyard.consumers.registry import wanted
from trackyard.consumers.supervisor import Supervisor
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _ids(receiver: Receiver) -> list[str]:
    """The messageIds a webhook receiver took (a batch is a JSON array, one event an object)."""
    ids = []
    for request in receiver.delivered():
        body = request.json()
        ids += [e["messageId"] for e in (body if isinstance(body, list) else [body])]
    return ids


@pytest.fixture
def supervisor(backends: Backends) -> Iterator[Supervisor]:
    running = Supervisor(backends.settings, ("destinations",))
    running.start()
    yield running
    running.stop()


def test_no_registry_means_no_destination_consumers(backends: Backends) -> None:
    assert [spec.name for spec in wanted(("destinations",), backends.settings)] == []
    assert not (backends.settings.data_dir / "destinations.db").exists()  # looking created nothing


def test_each_destination_is_a_process_of_its_own_and_a_down_one_delays_no_other(
    backends: Backends, receiver: Receiver, supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKYARD_DESTINATION_TIMEOUT_SECONDS", "1")
    hung, failing = Receiver(), Receiver()
    hung.answer(*[Answer(200, hang=30)] * 100)  # never answers in time
    failing.answer(*[Answer(500)] * 100_000)  # fails for as long as the test runs
    registry = open_destinations(backends.settings)  # the first destination, while supervised
    cursors = backends.cursors()
    try:
        registry.add(Destination("hung", "webhook", hung.url))
        registry.add(Destination("failing", "webhook", failing.url))
        registry.add(Destination("up", "webhook", receiver.url, batch_size=10))
        append(backends, tracks(50))
        poll(lambda: cursors.get("destination:up") == 50)
        assert sorted(_ids(receiver)) == sorted(f"m{i}" for i in range(50))
        poll(lambda: len(supervisor.pids()) == 3)
        pids = supervisor.pids()
        assert len(set(pids.values())) == 3  # three processes
        assert cursors.get("destination:hung") == 0 and cursors.get("destination:failing") == 0

        # SIGKILL one: it comes back, and the others go on meanwhile.
        os.kill(pids["destination:up"], signal.SIGKILL)
        poll(lambda: supervisor.pids().get("destination:up") not in (None, pids["destination:up"]))
        append(backends, tracks(10, start=50))
        poll(lambda: cursors.get("destination:up") == 60)
        assert sorted(set(_ids(receiver))) == sorted(f"m{i}" for i in range(60))

        registry.add(Destination("late", "webhook", receiver.url, batch_size=100))
        poll(lambda: cursors.get("destination:late") == 60)  # picked up while running

        registry.set_enabled("up", False)
        poll(lambda: "destination:up" not in supervisor.pids())
        append(backends, tracks(5, start=60))
        poll(lambda: cursors.get("destination:late") == 65)
        assert cursors.get("destination:up") == 60  # disabled: it waits where it was

        # Changed: its process is replaced by one with the new configuration.
        late_pid = supervisor.pids()["destination:late"]
        other = Receiver()
        registry.update(Destination("late", "webhook", other.url, batch_size=100))
        poll(lambda: supervisor.pids().get("destination:late") not in (None, late_pid))
        append(backends, tracks(1, start=65))
        poll(lambda: _ids(other) == ["m65"])
        other.close()

        registry.remove("hung")
        poll(lambda: "destination:hung" not in supervisor.pids())
        assert cursors.get("destination:failing") == 0  # still retrying its first batch
        events, attempts = registry.retrying("failing")
        assert events > 0 and attempts > 1  # what `destinations show` reports as retrying
    finally:
        registry.close()
        supervisor.stop()
        hung.close()
        failing.close()
    assert cursors.get("destination:failing") == 0  # the stop lost nothing of it

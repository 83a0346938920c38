"""Requests counted by status class, with retries, against a real receiver; kept in the registry.

Each outcome is what the receiver really answered (or did not): a 500 then a 200, a 400, a
timeout, a refused connection. The counts are read back from the registry file, through
``destinations show --json`` (what an operator and /metrics read).
"""

from __future__ import annotations

import msgspec
import pytest

from tests.conftest import cli
from tests.destinations.conftest import Answer, Receiver, append, poll, tracks
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.destinations import Destination, RequestCounts
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _deliver(backends: Backends, destination: Destination) -> dict[str, RequestCounts]:
    registry = open_destinations(backends.settings)
    registry.add(destination)
    runner = open_runner_for(backends, registry, registry.get(destination.name))
    runner.catch_up()
    assert runner.lag() == 0
    reread = open_destinations(backends.settings)  # from the file, not from the sink's memory
    try:
        return reread.request_counts(destination.name)
    finally:
        reread.close()


def test_a_500_then_a_200_and_a_400_are_counted_by_class_with_the_retry(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, tracks(3))
    receiver.answer(Answer(500), Answer(200), Answer(400))
    counts = _deliver(backends, Destination("hook", "webhook", receiver.url, batch_size=1))
    # m0: 500 then 200 (one retry); m1: 400 (dead at once); m2: 200.
    assert [r.status for r in receiver.requests] == [500, 200, 400, 200]
    assert counts == {
        "2xx": RequestCounts(requests=2, events=2, retries=1),
        "4xx": RequestCounts(requests=1, events=1, retries=0),
        "5xx": RequestCounts(requests=1, events=1, retries=0),
    }
    shown = msgspec.json.decode(
        cli("destinations", "show", "hook", "--json", "--data-dir", str(backends.settings.data_dir))
    )
    assert shown["requests"] == {
        "2xx": {"requests": 2, "events": 2, "retries": 1},
        "4xx": {"requests": 1, "events": 1, "retries": 0},
        "5xx": {"requests": 1, "events": 1, "retries": 0},
    }
    assert (shown["retries"], shown["delivered"], shown["dead"]) == (1, 2, 1)
    human = cli("destinations", "show", "hook", "--data-dir", str(backends.settings.data_dir))
    assert "requests: 2xx: 2 (2 events, 1 retries), 4xx: 1 (1 events, 0 retries)" in human


def test_a_batch_counts_as_one_request_of_all_its_events(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(5))
    receiver.answer(Answer(503), Answer(503))
    counts = _deliver(backends, Destination("hook", "webhook", receiver.url))
    assert counts == {
        "5xx": RequestCounts(requests=2, events=10, retries=1),
        "2xx": RequestCounts(requests=1, events=5, retries=1),
    }


def test_a_timeout_and_a_refused_connection_have_classes_of_their_own(
    backends: Backends, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(backends, tracks(1))
    receiver.answer(Answer(hang=1.5))  # the client gives up at 0.5 s
    assert _deliver(backends, Destination("slow", "webhook", receiver.url)) == {
        "timeout": RequestCounts(1, 1, 0),
        "2xx": RequestCounts(1, 1, 1),
    }
    closed = Receiver()
    closed.close()  # nothing listens there: every attempt is refused until retry_for ends
    monkeypatch.setenv("TRACKYARD_DESTINATION_RETRY_SECONDS", "0.2")
    ((status_class, counted),) = _deliver(backends, Destination("gone", "webhook", closed.url)).items()
    assert status_class == "connection"
    assert counted.requests >= 2 and counted.retries == counted.requests - 1
    assert len(backends.dead_letters().read("destination:gone")) == 1


def test_an_unordered_destination_counts_its_parked_retries(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(2))
    receiver.answer(Answer(500))
    registry = open_destinations(backends.settings)
    registry.add(Destination("loose", "webhook", receiver.url, batch_size=1, ordered=False))
    runner = open_runner_for(backends, registry, registry.get("loose"))
    runner.catch_up()
    # m0 was parked after its 500; m1 went on. A later read retries m0 (due after 0.05 s at most).
    poll(lambda: runner.step() == 0 and registry.retrying("loose")[0] == 0)
    assert registry.request_counts("loose") == {
        "5xx": RequestCounts(1, 1, 0),
        "2xx": RequestCounts(2, 2, 1),
    }

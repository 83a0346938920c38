"""Several Koala requests in flight at once (``TRACKYARD_DESTINATION_IN_FLIGHT``): one
person's requests still arrive in their order, a retried one holds back only its person's
later requests among those in flight, and a SIGKILL in the middle loses nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli, start_server
from tests.destinations.conftest import Answer, Receiver, append
from tests.destinations.test_sigkill import send_and_kill_delivery
from tests.faults._group import Group
from trackyard.consumers.runner import Runner
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


@pytest.fixture(autouse=True)
def _four_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKYARD_DESTINATION_IN_FLIGHT", "4")


def _runner(backends: Backends, destination: Destination) -> Runner:
    registry = open_destinations(backends.settings)
    registry.add(destination)
    return open_runner_for(backends, registry, registry.get(destination.name))


def _events(people: int, each: int) -> list[dict[str, Any]]:
    """``each`` events of every person, interleaved: ``p{n}-{i}`` is person n's i-th."""
    return [
        {"type": "track", "event": "Tick", "messageId": f"p{n}-{i}", "userId": f"p{n}@example.com"}
        for i in range(each)
        for n in range(people)
    ]


def test_one_persons_requests_keep_their_order_while_others_are_in_flight(
    backends: Backends, receiver: Receiver
) -> None:
    # 70 events each: every person's events are three requests (30, 30, 10 entries).
    append(backends, _events(4, 70))
    # The first request to arrive is answered slowly, with a 503: the other people's
    # requests go on meanwhile, that person's later ones wait until it is retried and delivered.
    receiver.answer(Answer(hang=0.3, status=503), *[Answer(hang=0.05)] * 3)
    runner = _runner(backends, Destination("k", "koala", receiver.url, key="pk"))
    runner.catch_up()
    assert runner.lag() == 0
    with receiver.lock:
        answered = list(receiver.requests)  # in the order they were answered
    by_person: dict[str, list[str]] = {}
    for request in answered:
        if 200 <= request.status <= 299:
            body = request.json()
            by_person.setdefault(body["email"], []).extend(e["message_id"] for e in body["events"])
    for n in range(4):
        assert by_person[f"p{n}@example.com"] == [f"p{n}-{i}" for i in range(70)], f"p{n}'s events"
    assert len(answered) == 4 * 3 + 1  # the 503 once more
    # The 503 was the first request to arrive; it is recorded once answered, 0.3 s later:
    # other requests were answered meanwhile, so several were in flight at once.
    slow = next(i for i, r in enumerate(answered) if r.status == 503)
    assert slow > 0, "nothing was answered while the slow request was out: one at a time"


def test_sigkilled_delivery_with_requests_in_flight_loses_nothing(tmp_path: Path) -> None:
    b = start_server(tmp_path / "b")
    a_dir = tmp_path / "a"
    a_key = cli("sources", "add", "web", "--data-dir", str(a_dir)).strip()
    a = Group(a_dir, "serve", "--port", "0", log=tmp_path / "a.log")
    cli(
        "destinations",
        "add",
        "to-b",
        "--format",
        "koala",
        "--url",
        b.url,
        "--key",
        b.write_key,
        "--data-dir",
        str(a_dir),
    )
    sent = _events(200, 3)  # 200 people: a request each, four at a time
    try:
        send_and_kill_delivery(a, a_key, b, sent)
    finally:
        a.signal_group(signal.SIGTERM)
        a.wait_gone(60)
        b.stop()

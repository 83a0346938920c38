"""The webhook kind against a real HTTP receiver: bodies, signature, and each status class."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest

from tests.destinations.conftest import Answer, Receiver, append, poll, tracks
from trackyard.consumers.runner import Runner
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _runner(backends: Backends, destination: Destination) -> Runner:
    registry = open_destinations(backends.settings)
    registry.add(destination)
    return open_runner_for(backends, registry, registry.get(destination.name))


def _dead(backends: Backends, name: str) -> list[str]:
    return [d.reason for d in backends.dead_letters().read(f"destination:{name}")]


def test_one_event_a_request_with_headers_and_the_signature_of_the_body(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, tracks(2))
    runner = _runner(
        backends,
        Destination(
            "hook", "webhook", receiver.url + "/in", secret="shh", headers=(("X-Team", "data"),), batch_size=1
        ),
    )
    assert runner.catch_up() == 2
    got = receiver.delivered()
    assert [r.json()["messageId"] for r in got] == ["m0", "m1"]
    for request in got:
        assert request.path == "/in"
        assert request.headers["X-Team"] == "data"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Signature"] == hmac.new(b"shh", request.body, hashlib.sha1).hexdigest()
    assert runner.lag() == 0


def test_a_batch_is_one_json_array_signed_whole(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(5))
    runner = _runner(backends, Destination("hook", "webhook", receiver.url, secret="k", batch_size=2))
    runner.catch_up()
    bodies = [r.json() for r in receiver.delivered()]
    assert [[e["messageId"] for e in body] for body in bodies] == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    for request in receiver.delivered():
        assert request.headers["X-Signature"] == hmac.new(b"k", request.body, hashlib.sha1).hexdigest()


def test_without_a_secret_nothing_is_signed(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(3))
    _runner(backends, Destination("plain", "webhook", receiver.url)).catch_up()
    (request,) = receiver.delivered()
    assert len(request.json()) == 3  # the default batch size is 1,000: one array
    assert "X-Signature" not in request.headers


@pytest.mark.parametrize("status", [500, 503, 408])
def test_a_retryable_status_is_retried_until_delivered(
    backends: Backends, receiver: Receiver, status: int
) -> None:
    append(backends, tracks(1))
    receiver.answer(Answer(status), Answer(status))
    runner = _runner(backends, Destination("hook", "webhook", receiver.url))
    runner.catch_up()
    assert [r.status for r in receiver.requests] == [status, status, 200]
    assert _dead(backends, "hook") == []
    assert runner.lag() == 0


def test_429_waits_at_least_its_retry_after(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(1))
    receiver.answer(Answer(429, headers={"Retry-After": "1"}))
    _runner(backends, Destination("hook", "webhook", receiver.url)).catch_up()
    first, second = receiver.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.9  # the backoff alone is at most 0.05 s here


def test_a_hanging_receiver_times_out_and_is_retried(backends: Backends, receiver: Receiver) -> None:
    append(backends, tracks(1))
    receiver.answer(Answer(hang=1.5))
    runner = _runner(backends, Destination("hook", "webhook", receiver.url))
    runner.catch_up()
    poll(lambda: any(r.status == 200 for r in receiver.delivered()))
    assert _dead(backends, "hook") == []
    assert runner.lag() == 0


@pytest.mark.parametrize("status", [400, 401, 404, 501])
def test_a_permanent_status_dead_letters_at_once_and_delivery_goes_on(
    backends: Backends, receiver: Receiver, status: int
) -> None:
    append(backends, tracks(2))
    receiver.answer(Answer(status, body=b"bad field: " + b"x" * 2000))
    runner = _runner(backends, Destination("hook", "webhook", receiver.url, batch_size=1))
    runner.catch_up()
    (reason,) = _dead(backends, "hook")
    assert reason.startswith(f"HTTP {status}: bad field: xxx")
    assert "permanent; 1 attempts; last at 20" in reason
    assert len(reason) < 700  # the body is truncated
    (letter,) = backends.dead_letters().read("destination:hook")
    assert (letter.seq, letter.attempts) == (1, 1)
    assert [r.json()["messageId"] for r in receiver.delivered()] == ["m1"]
    assert runner.lag() == 0


def test_retries_end_in_the_dead_letters_after_the_configured_time(
    backends: Backends, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKYARD_DESTINATION_RETRY_SECONDS", "0.3")
    append(backends, tracks(1))
    receiver.answer(*[Answer(503)] * 1000)
    runner = _runner(backends, Destination("hook", "webhook", receiver.url))
    runner.catch_up()
    (reason,) = _dead(backends, "hook")
    assert reason.startswith("HTTP 503") and "retried for" in reason
    assert len(receiver.requests) > 1
    assert runner.lag() == 0


def test_connection_refused_is_retried_then_delivered(backends: Backends, receiver: Receiver) -> None:
    """A receiver that is not there yet: the events wait, then go once it listens."""
    append(backends, tracks(1))
    closed = Receiver()
    url = closed.url
    closed.close()  # nothing listens on that port now
    runner = _runner(backends, Destination("hook", "webhook", url))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    poll(lambda: "ConnectError" in _last_error(backends))
    runner.stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert runner.lag() == 1  # nothing lost: the cursor stayed before the event
    assert _dead(backends, "hook") == []


def _last_error(backends: Backends) -> str:
    return open_destinations(backends.settings).status("hook")[1] or ""

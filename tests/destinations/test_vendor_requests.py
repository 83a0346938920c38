"""The koala, bloomreach and vitally kinds against a small real HTTP receiver: the requests they
make (paths, auth, batch limits), Bloomreach's per-command answers, and skips with reasons."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from tests.destinations.conftest import Answer, Receiver, append, tracks
from trackyard.consumers.runner import Runner
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _runner(backends: Backends, destination: Destination) -> Runner:
    registry = open_destinations(backends.settings)
    registry.add(destination)
    return open_runner_for(backends, registry, registry.get(destination.name))


def _one_person(n: int) -> list[dict[str, Any]]:
    return tracks(n, userId="ada@example.com", properties={"plan": "pro"})


def test_koala_puts_the_key_in_the_path_and_30_entries_a_list(backends: Backends, receiver: Receiver) -> None:
    append(backends, _one_person(75))
    runner = _runner(backends, Destination("k", "koala", receiver.url + "/", key="pk/1"))
    assert runner.catch_up() == 75
    got = receiver.delivered()
    assert {r.path for r in got} == {"/web/projects/pk%2F1/batch"}
    assert [len(r.json()["events"]) for r in got] == [30, 30, 15]
    assert [e["message_id"] for r in got for e in r.json()["events"]] == [f"m{i}" for i in range(75)]
    assert all(r.json()["email"] == "ada@example.com" for r in got)
    assert all("Authorization" not in r.headers and "Content-Encoding" not in r.headers for r in got)


def test_bloomreach_sends_50_commands_a_request_with_basic_auth(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, _one_person(120))
    receiver.answer(*(_results(50), _results(50), _results(20)))
    runner = _runner(backends, Destination("b", "bloomreach", receiver.url, key="tok", secret="sec"))
    assert runner.catch_up() == 120
    got = receiver.delivered()
    assert {r.path for r in got} == {"/track/v2/projects/tok/batch"}
    assert [len(r.json()["commands"]) for r in got] == [50, 50, 20]
    assert got[0].headers["Authorization"] == "Basic " + base64.b64encode(b"tok:sec").decode()
    assert "Content-Encoding" not in got[0].headers
    first = got[0].json()["commands"][0]
    assert first["name"] == "customers/events"
    assert first["data"]["customer_ids"] == {"registered": "ada@example.com"}
    assert first["data"]["event_type"] == "Signed Up"
    assert backends.dead_letters().count("destination:b") == 0


def test_bloomreach_without_a_secret_uses_the_public_token(backends: Backends, receiver: Receiver) -> None:
    append(backends, _one_person(1))
    receiver.answer(_results(1))
    _runner(backends, Destination("b", "bloomreach", receiver.url, key="tok")).catch_up()
    assert receiver.delivered()[0].headers["Authorization"] == "Token tok"


def test_a_refused_bloomreach_command_dead_letters_only_its_event(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, _one_person(3))
    results = [{"success": True}, {"success": False, "errors": ["Not authorized"]}, {"success": True}]
    receiver.answer(Answer(body=msgspec.json.encode({"results": results, "success": True})))
    registry = open_destinations(backends.settings)
    runner = _runner(backends, Destination("b", "bloomreach", receiver.url, key="tok"))
    assert runner.catch_up() == 3
    dead = backends.dead_letters().read("destination:b")
    assert [msgspec.json.decode(d.body)["messageId"] for d in dead] == ["m1"]
    assert '["Not authorized"]' in dead[0].reason and "permanent" in dead[0].reason
    assert registry.status("b")[0] == 2
    assert runner.lag() == 0


def test_a_bloomreach_answer_without_results_dead_letters_its_events(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, _one_person(2))
    receiver.answer(Answer(body=b"<html>ok</html>"))
    _runner(backends, Destination("b", "bloomreach", receiver.url, key="tok")).catch_up()
    dead = backends.dead_letters().read("destination:b")
    assert len(dead) == 2 and "without one result per command" in dead[0].reason


def test_vitally_sends_100_messages_a_json_array_with_the_token(
    backends: Backends, receiver: Receiver
) -> None:
    append(backends, _one_person(250))
    _runner(backends, Destination("v", "vitally", receiver.url, key="vt-token")).catch_up()
    got = receiver.delivered()
    assert {r.path for r in got} == {"/analytics/v1/batch"}
    assert [len(r.json()) for r in got] == [100, 100, 50]
    assert got[0].headers["Authorization"] == "Basic vt-token"
    message = got[0].json()[0]
    assert message["type"] == "track" and message["messageId"] == "m0"
    assert message["userId"] == "ada@example.com" and message["properties"] == {"plan": "pro"}


def test_events_a_format_cannot_express_are_skipped_with_a_reason(
    backends: Backends, receiver: Receiver
) -> None:
    events: list[dict[str, Any]] = [
        {"type": "screen", "messageId": "s1", "userId": "u1", "name": "Home"},
        {"type": "alias", "messageId": "a1", "userId": "u1", "previousId": "x"},
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {}},  # no account
        {"type": "track", "messageId": "t1", "anonymousId": "anon", "event": "E"},  # no userId
        {"type": "track", "messageId": "t2", "userId": "u1", "event": "E"},
    ]
    append(backends, events)
    registry = open_destinations(backends.settings)
    runner = _runner(backends, Destination("v", "vitally", receiver.url, key="t"))
    assert runner.catch_up() == 5
    assert [m["messageId"] for r in receiver.delivered() for m in r.json()] == ["t2"]
    skipped = registry.skipped("v")
    assert [(s.seq, s.type) for s in skipped] == [(1, "screen"), (2, "alias"), (3, "identify"), (4, "track")]
    counts = registry.skip_counts("v")
    assert counts["A screen call has no Vitally counterpart."] == 1
    assert any("accountId or an organizationId" in reason for reason in counts)
    assert backends.dead_letters().count("destination:v") == 0
    # Read again (a redelivery, a replay): each event is recorded once.
    runner.sink.deliver(backends.log.read_events(after=0, limit=10))
    assert sum(registry.skip_counts("v").values()) == 4


def _results(n: int) -> Answer:
    return Answer(body=msgspec.json.encode({"results": [{"success": True}] * n, "success": True}))


def test_koala_groups_each_persons_events_in_their_order(backends: Backends, receiver: Receiver) -> None:
    people = [{**e, "userId": f"p{i % 3}@example.com"} for i, e in enumerate(tracks(9))]
    append(backends, people)
    _runner(backends, Destination("k", "koala", receiver.url, key="pk")).catch_up()
    got = [(r.json()["email"], [e["message_id"] for e in r.json()["events"]]) for r in receiver.delivered()]
    # Different people's requests may be in flight at once (TRACKYARD_DESTINATION_IN_FLIGHT), so
    # they arrive in any order; each person's events are one request, in their order.
    assert sorted(got) == [
        ("p0@example.com", ["m0", "m3", "m6"]),
        ("p1@example.com", ["m1", "m4", "m7"]),
        ("p2@example.com", ["m2", "m5", "m8"]),
    ]


def test_too_large_for_the_format_is_dead_lettered_without_a_request(
    backends: Backends, receiver: Receiver
) -> None:
    big = "x" * 40_000  # over Vitally's (trackyard's) 32 KB a message
    append(backends, [*tracks(1, userId="u1", properties={"blob": big}), *tracks(1, start=1, userId="u1")])
    _runner(backends, Destination("v", "vitally", receiver.url, key="t")).catch_up()
    assert [m["messageId"] for r in receiver.delivered() for m in r.json()] == ["m1"]
    dead = backends.dead_letters().read("destination:v")
    assert [d.seq for d in dead] == [1] and "over 32,768" in dead[0].reason


def test_a_koala_request_over_500_kb_is_split(backends: Backends, receiver: Receiver) -> None:
    blob = "y" * 200_000  # three of them make one person's request too large
    append(backends, tracks(3, userId="ada@example.com", properties={"blob": blob}))
    _runner(backends, Destination("k", "koala", receiver.url, key="pk")).catch_up()
    sizes = [len(r.json()["events"]) for r in receiver.delivered()]
    assert sorted(sizes) == [1, 2] and all(len(r.body) <= 500 * 1024 for r in receiver.delivered())
    assert [e["message_id"] for r in receiver.delivered() for e in r.json()["events"]] == ["m0", "m1", "m2"]

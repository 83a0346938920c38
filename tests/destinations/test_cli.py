"""``trackyard destinations``: add, list, show, dead, replay, disable, enable, remove."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.conftest import cli
from tests.destinations.conftest import Answer, Receiver, append, tracks
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.destinations.consumer import open_runner_for
from trackyard.storage.factory import open_backends, open_destinations

pytestmark = pytest.mark.usefixtures("fast_retries")


def _fails(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0
    return result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    cli("sources", "add", "web", "--data-dir", str(directory))
    return directory


def test_credentials_are_never_printed_after_add(data_dir: Path, receiver: Receiver) -> None:
    d = str(data_dir)
    cli(
        "destinations",
        "add",
        "hook",
        "--format",
        "webhook",
        "--url",
        receiver.url,
        "--secret",
        "s3cr3t-value",
        "--key",
        "k3y-value",
        "--header",
        "Authorization: Bearer t0ken-value",
        "--type",
        "track",
        "--data-dir",
        d,
    )
    for out in (
        cli("destinations", "list", "--data-dir", d),
        cli("destinations", "list", "--json", "--data-dir", d),
        cli("destinations", "show", "hook", "--data-dir", d),
        cli("destinations", "show", "hook", "--json", "--data-dir", d),
    ):
        assert "hook" in out
        for secret in ("s3cr3t-value", "k3y-value", "t0ken-value"):
            assert secret not in out
    shown = msgspec.json.decode(cli("destinations", "show", "hook", "--json", "--data-dir", d))
    assert shown["secret"] == "set" and shown["key"] == "set" and shown["headers"] == ["Authorization"]
    assert (shown["format"], shown["types"], shown["batch_size"], shown["lag"]) == (
        "webhook",
        ["track"],
        1000,
        0,
    )
    assert (data_dir / "destinations.db").stat().st_mode & 0o077 == 0


def test_bad_input_gets_a_clear_error(data_dir: Path) -> None:
    d = str(data_dir)
    assert cli("destinations", "list", "--data-dir", d) == ""
    assert "No destination named 'w'" in _fails("destinations", "show", "w", "--data-dir", d)
    assert not (data_dir / "destinations.db").exists()  # reading creates nothing (nor starts delivery)
    assert "Koala public project key" in _fails(
        "destinations", "add", "k", "--format", "koala", "--url", "http://x", "--data-dir", d
    )
    assert "takes no secret" in _fails(
        "destinations", "add", "v", "--format", "vitally", "--url", "http://x", "--key", "t",
        "--secret", "s", "--data-dir", d,
    )  # fmt: skip
    assert "not an http" in _fails(
        "destinations", "add", "w", "--format", "webhook", "--url", "ftp://x", "--data-dir", d
    )
    assert "write key" in _fails(
        "destinations", "add", "s", "--format", "segment", "--url", "http://x", "--data-dir", d
    )
    assert "Name: value" in _fails(
        "destinations",
        "add",
        "w",
        "--format",
        "webhook",
        "--url",
        "http://x",
        "--header",
        "nocolon",
        "--data-dir",
        d,
    )
    assert "4000" in _fails(
        "destinations",
        "add",
        "w",
        "--format",
        "webhook",
        "--url",
        "http://x",
        "--batch-size",
        "4001",
        "--data-dir",
        d,
    )
    cli("destinations", "add", "w", "--format", "webhook", "--url", "http://x", "--data-dir", d)
    assert "exists already" in _fails(
        "destinations", "add", "w", "--format", "webhook", "--url", "http://x", "--data-dir", d
    )
    assert "No destination named 'nope'" in _fails("destinations", "show", "nope", "--data-dir", d)
    assert "exactly one" in _fails("destinations", "replay", "w", "--data-dir", d)


def test_dead_letters_are_listed_with_why_and_replayed_once(data_dir: Path, receiver: Receiver) -> None:
    d = str(data_dir)
    cli(
        "destinations",
        "add",
        "hook",
        "--format",
        "webhook",
        "--url",
        receiver.url,
        "--batch-size",
        "1",
        "--data-dir",
        d,
    )
    backends = open_backends(Settings(data_dir=data_dir), writer=True)
    registry = open_destinations(backends.settings)
    try:
        append(backends, tracks(3))
        receiver.answer(Answer(400, body=b"missing userId"), Answer(422, body=b"nope"))
        open_runner_for(backends, registry, registry.get("hook")).catch_up()
    finally:
        registry.close()
        backends.close()
    letters = [
        msgspec.json.decode(line)
        for line in cli("destinations", "dead", "hook", "--json", "--data-dir", d).split("\n")
        if line
    ]
    assert [(x["seq"], x["event"]["messageId"]) for x in letters] == [(1, "m0"), (2, "m1")]
    assert letters[0]["reason"].startswith("HTTP 400: missing userId (permanent; 1 attempts")
    assert "HTTP 422: nope" in cli("destinations", "dead", "hook", "--data-dir", d)
    shown = msgspec.json.decode(cli("destinations", "show", "hook", "--json", "--data-dir", d))
    assert (shown["delivered"], shown["dead"], shown["lag"], shown["lag_seconds"]) == (1, 2, 0, 0.0)
    assert shown["retrying"] == {"events": 0, "attempts": 0}
    assert shown["last_error"]["response"] == "HTTP 422: nope"
    assert shown["last_error"]["request"].startswith(f"POST {receiver.url} (1 events, seq 2, ")
    text = cli("destinations", "show", "hook", "--data-dir", d)
    assert "answer: HTTP 422: nope" in text and "lag: 0 events, 0.0s" in text

    receiver.answer(Answer(400, body=b"still bad"))  # the first replayed fails again, the second goes
    out = cli("destinations", "replay", "hook", "--dead", "--data-dir", d)
    assert "1 delivered, 1 dead-lettered" in out
    assert [r.json()["messageId"] for r in receiver.delivered()] == ["m2", "m1"]
    (again,) = [
        msgspec.json.decode(line)
        for line in cli("destinations", "dead", "hook", "--json", "--data-dir", d).split("\n")
        if line
    ]
    assert again["seq"] == 1 and "still bad" in again["reason"]


def test_disable_enable_and_remove(data_dir: Path) -> None:
    d = str(data_dir)
    cli(
        "destinations", "add", "hook", "--format", "webhook", "--url", "http://127.0.0.1:9/x", "--data-dir", d
    )
    cli("destinations", "disable", "hook", "--data-dir", d)
    assert "disabled" in cli("destinations", "list", "--data-dir", d)
    cli("destinations", "enable", "hook", "--data-dir", d)
    assert "enabled" in cli("destinations", "list", "--data-dir", d)
    cli("destinations", "remove", "hook", "--data-dir", d)
    assert cli("destinations", "list", "--data-dir", d) == ""
    assert "No destination" in _fails("destinations", "disable", "hook", "--data-dir", d)


def test_replay_since_a_time_finds_the_first_event_received_then(data_dir: Path, receiver: Receiver) -> None:
    d = str(data_dir)
    cli("destinations", "add", "hook", "--format", "webhook", "--url", receiver.url, "--data-dir", d)
    backends = open_backends(Settings(data_dir=data_dir), writer=True)
    try:
        append(backends, tracks(5, receivedAt="2026-01-01T00:00:00.000Z"))
        append(backends, tracks(3, start=5, receivedAt="2026-06-01T12:00:00.000Z"))
        append(backends, tracks(2, start=8, receivedAt="2099-01-01T00:00:00.000Z"))
    finally:
        backends.close()
    out = cli("destinations", "replay", "hook", "--since", "2026-03-01T00:00:00Z", "--data-dir", d)
    assert "5 delivered, 0 dead-lettered" in out
    (batch,) = receiver.delivered()
    assert [e["messageId"] for e in batch.json()] == ["m5", "m6", "m7", "m8", "m9"]
    out = cli("destinations", "replay", "hook", "--since", "2h", "--data-dir", d)
    assert "2 delivered" in out  # only those received after two hours ago (the future ones)
    assert "neither ISO-8601" in _fails(
        "destinations", "replay", "hook", "--since", "yesterday", "--data-dir", d
    )
    assert "exactly one" in _fails(
        "destinations", "replay", "hook", "--dead", "--since", "2h", "--data-dir", d
    )


def test_consumers_status_shows_each_destination_as_a_consumer(data_dir: Path) -> None:
    d = str(data_dir)
    for name in ("one", "two"):
        cli(
            "destinations",
            "add",
            name,
            "--format",
            "webhook",
            "--url",
            "http://127.0.0.1:9/",
            "--data-dir",
            d,
        )
    cli("destinations", "disable", "two", "--data-dir", d)
    backends = open_backends(Settings(data_dir=data_dir), writer=True)
    try:
        append(backends, tracks(3))
    finally:
        backends.close()
    rows = {
        row["name"]: row
        for row in map(
            msgspec.json.decode, cli("consumers", "status", "--json", "--data-dir", d).splitlines()
        )
    }
    assert "destinations" not in rows
    assert rows["destination:one"]["lag"] == 3 and rows["destination:one"]["dead_letters"] == 0
    assert rows["destination:two"]["running"] is False
    assert "destination:one: not running" in cli("consumers", "status", "--data-dir", d)


def test_names_must_be_able_to_name_a_consumer(data_dir: Path) -> None:
    out = _fails(
        "destinations", "add", "a/b", "--format", "webhook", "--url", "http://x/", "--data-dir", str(data_dir)
    )
    assert "not a destination name" in out

"""Roles: the HTTP collectors and the consumers run apart on one data dir and meet only in
the event log; killing the consumers under load loses nothing, and they resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
from click.testing import CliRunner

from tests.conftest import cli
from tests.faults._group import Group, Load, add_source, stored_message_ids
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.storage.base import StoredEvent
from trackyard.storage.factory import open_backends

_TOKEN = "roles-token"
_ADMIN = {"Authorization": f"Bearer {_TOKEN}"}


def _status(data: Path) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(cli("profiles", "status", "--json", "--data-dir", str(data)))
    return result


def _until_caught_up(data: Path, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(data)
        if status["lag"] == 0 and status["running"] and not status["rebuild_pending"]:
            return status
        assert time.monotonic() < deadline, f"the consumers did not catch up: {status}"
        time.sleep(0.05)


def test_ingest_and_consumers_apart_and_a_sigkill_of_the_consumers_under_load(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = add_source(data)
    log = tmp_path / "roles.log"
    ingest = Group(data, "serve", "--role", "ingest", "--port", "0", "--admin-token", _TOKEN, log=log)
    consumers: Group | None = None
    try:
        assert ingest.consumer_pids() == []  # the collectors run no consumer
        load = Load(ingest.url, key)
        load.wait_for(300)
        assert not _status(data)["running"]
        consumers = Group(data, "serve", "--role", "consumers", log=log)
        consumers.wait_for_consumer()
        load.wait_for(len(load.acknowledged) + 1000)
        consumers.signal_group(signal.SIGKILL)  # the supervisor and its consumer, mid-batch
        consumers.wait_gone(10)
        load.wait_for(len(load.acknowledged) + 500)
        consumers = Group(data, "serve", "--role", "consumers", log=log)
        acknowledged = load.finish()
        status = _until_caught_up(data)
        assert set(acknowledged) <= stored_message_ids(data)
        assert status["processed"] == status["cursor"] == status["head"] >= len(acknowledged)
        person = msgspec.json.decode(cli("profiles", "show", "user_id:u", "--json", "--data-dir", str(data)))
        assert person["event_count"] == status["head"]  # nothing applied twice, nothing skipped
        consumers.signal_group(signal.SIGINT)
        assert consumers.wait_gone(20) == 0
        ingest.signal_group(signal.SIGINT)
        assert ingest.wait_gone(20) == 0
    finally:
        ingest.kill()
        if consumers is not None:
            consumers.kill()
    assert "Traceback" not in log.read_text()


def test_a_second_consume_waits_and_takes_over_when_the_first_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_source(data)
    log = tmp_path / "consume.log"
    first = Group(data, "consume", log=log)
    second: Group | None = None
    try:
        first.wait_for_consumer()
        second = Group(data, "consume", "profiles", log=log)
        deadline = time.monotonic() + 30
        while "waiting for its lease" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert second.consumer_pids() == []  # one instance per data dir
        # Only the supervisor: its consumer follows it (the parent-death signal), and the
        # lease, which they held together, is free once both are gone.
        os.kill(first.pid, signal.SIGKILL)
        first.wait_gone(20)
        second.wait_for_consumer()
        assert _until_caught_up(data)["running"]
        second.signal_group(signal.SIGTERM)
        assert second.wait_gone(20) == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_consume_names_the_known_consumers_when_given_an_unknown_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["consume", "nope", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        "no consumer named 'nope'; there are: profiles, warehouse, retention, metrics, destinations"
        in result.output
    )


def test_consumers_status_shows_cursor_head_lag_running_and_dead_letters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_source(data)
    rows = [
        msgspec.json.decode(line)
        for line in cli("consumers", "status", "--json", "--data-dir", str(data)).split("\n")
        if line
    ]
    # The warehouse loader is on by default (the embedded DuckDB file, not created by a read);
    # retention and metrics read no events: they are never behind.
    assert rows == [
        {"name": name, "running": False, "cursor": 0, "head": 0, "lag": 0, "dead_letters": 0}
        for name in ("profiles", "warehouse", "retention", "metrics")
    ]
    assert not (data / "warehouse.duckdb").exists()
    text = cli("consumers", "status", "--data-dir", str(data))
    assert "profiles: not running, cursor 0, head 0, lag 0, dead letters 0" in text
    assert "warehouse: not running, cursor 0, head 0, lag 0, dead letters 0" in text


def test_dead_letters_are_listed_with_their_reason_and_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_source(data)
    backends = open_backends(Settings(data_dir=data))
    try:
        event = StoredEvent(7, 1, "track", b'{"type":"track","event":"Bad"}')
        backends.dead_letters().add("profiles", event, "ValueError: no", 5)
    finally:
        backends.close()
    assert "dead letters 1" in cli("consumers", "status", "--data-dir", str(data))
    [row] = [
        msgspec.json.decode(line)
        for line in _lines("consumers", "dead-letters", "--json", "--data-dir", str(data))
    ]
    assert (row["consumer"], row["seq"], row["reason"], row["attempts"]) == (
        "profiles",
        7,
        "ValueError: no",
        5,
    )
    assert row["event"] == {"type": "track", "event": "Bad"}
    assert "seq 7\t5 attempts\tValueError: no" in cli(
        "consumers", "dead-letters", "profiles", "--data-dir", str(data)
    )


def _lines(*args: str) -> list[str]:
    return [line for line in cli(*args).split("\n") if line]

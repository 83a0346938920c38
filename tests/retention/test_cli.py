"""``trackyard store status`` and ``trackyard store prune`` on a real store, and the
``retention`` consumer under a real ``trackyard serve``."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from click.testing import CliRunner

from tests.conftest import cli, start_server
from tests.retention.conftest import DAY_MS, write
from trackyard.cli import main
from trackyard.storage.factory import Backends


def _status(data_dir: Path) -> dict[str, Any]:
    return dict(msgspec.json.decode(cli("store", "status", "--json", "--data-dir", str(data_dir))))


def test_status_and_prune_say_which_consumer_holds_retention_back(backends: Backends) -> None:
    data_dir = backends.settings.data_dir
    now = int(time.time() * 1000)
    write(backends, 6_000, received_ms=now - 40 * DAY_MS)
    write(backends, 50, start=6_000)

    before = _status(data_dir)
    assert before["events"] == 6_050
    assert before["oldest_seq"] == 1
    assert set(before["disk_bytes"]) >= {"log", "dedup", "rejects", "profiles", "warehouse"}
    assert before["held_back_by"] == []  # no retention set: nothing is due

    held = cli("store", "prune", "--older-than", "30d", "--data-dir", str(data_dir))
    assert "dropped 0 events" in held
    assert "held back by profiles (at seq 0)" in held
    status = CliRunner(env={"TRACKYARD_RETENTION": "30d"}).invoke(
        main, ["store", "status", "--data-dir", str(data_dir)], catch_exceptions=False
    )
    assert "retention is held back by: profiles (at seq 0)" in status.stdout
    assert "keep 30d" in status.stdout

    dropped = cli("store", "prune", "--older-than", "30d", "--ignore-consumers", "--data-dir", str(data_dir))
    assert "dropped 6,000 events" in dropped
    after = _status(data_dir)
    assert after["events"] == 50
    assert after["oldest_seq"] == 6_001


def test_prune_refuses_a_duration_it_cannot_read(backends: Backends) -> None:
    result = CliRunner().invoke(
        main, ["store", "prune", "--older-than", "a month", "--data-dir", str(backends.settings.data_dir)]
    )
    assert result.exit_code == 2
    assert "is not a duration: use e.g. 30d" in result.output


def test_serve_compacts_and_applies_size_retention_in_the_background(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(
        data_dir,
        "--retention-size",
        "1MB",
        "--durability",
        "process",
        "--no-warehouse",
        env={"TRACKYARD_RETENTION_INTERVAL": "1"},
    )
    try:
        auth = {"Authorization": "Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()}
        with httpx.Client(base_url=server.url, headers=auth) as client:
            for request in range(300):
                batch = [
                    {
                        "type": "track",
                        "event": "Viewed",
                        "userId": f"u{i % 97}",
                        "messageId": f"{request}-{i}",
                    }
                    for i in range(100)
                ]
                assert client.post("/v1/batch", json={"batch": batch}).status_code == 200
        deadline = time.monotonic() + 120
        while True:
            status = _status(data_dir)
            if (
                status["compacted_events"]
                and status["oldest_seq"] > 1
                and status["consumers"]["profiles"] == 30_000
                and status["log_bytes"] <= 1_000_000  # a pass may be part way
            ):
                break
            assert time.monotonic() < deadline, json.dumps(status)
            time.sleep(0.2)
        assert status["head_seq"] == 30_000
        assert status["log_bytes"] <= 1_000_000
        # The events still kept read back through the CLI, the newest last.
        lines = cli(
            "events", "--json", "--with-seq", "--data-dir", str(data_dir), "--limit", "100000"
        ).split()
        assert msgspec.json.decode(lines[-1])["seq"] == 30_000
    finally:
        server.stop()

"""``trackyard events``: a script can follow the log from the JSON output alone."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import msgspec
from click.testing import CliRunner

from tests.conftest import cli, start_server
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.sqlite.store import SQLiteStore


def _store_events(data_dir: Path, count: int) -> None:
    store = SQLiteStore(Settings(data_dir=data_dir))
    web = store.add_source("web")
    body = [msgspec.json.encode({"type": "track", "messageId": f"m{i}", "event": "E"}) for i in range(count)]
    asyncio.run(store.append([EventRecord(web.id, f"m{i}", "track", 0, b) for i, b in enumerate(body)], []))
    store.close()


def test_with_seq_wraps_the_canonical_event_unchanged(tmp_path: Path) -> None:
    _store_events(tmp_path, 3)
    plain = cli("events", "--json", "--data-dir", str(tmp_path)).split("\n")[:-1]
    wrapped = [
        msgspec.json.decode(line)
        for line in cli("events", "--json", "--with-seq", "--data-dir", str(tmp_path)).split("\n")
        if line
    ]
    assert [w["seq"] for w in wrapped] == [1, 2, 3]
    assert [w["event"] for w in wrapped] == [msgspec.json.decode(line) for line in plain]
    # A script resumes from the last seq it printed, and misses nothing.
    resumed = cli(
        "events", "--json", "--with-seq", "--after", str(wrapped[1]["seq"]), "--data-dir", str(tmp_path)
    )
    assert [msgspec.json.decode(line)["event"]["messageId"] for line in resumed.split("\n") if line] == ["m2"]


def test_with_seq_needs_json(tmp_path: Path) -> None:
    _store_events(tmp_path, 1)
    result = CliRunner().invoke(main, ["events", "--with-seq", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--with-seq goes with --json" in result.output


def _lines(stream: IO[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return found


def _take(lines: queue.Queue[str], n: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    taken: list[Any] = []
    while len(taken) < n:
        taken.append(msgspec.json.decode(lines.get(timeout=max(0.0, deadline - time.monotonic()))))
    return taken


def test_follow_prints_events_as_they_arrive_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, source="web")
    other = cli("sources", "add", "app", "--data-dir", str(data)).strip()
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackyard",
            "events",
            "--follow",
            "--json",
            "--with-seq",
            "--source",
            "web",
            "--type",
            "track",
            "--interval",
            "0.05",
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        lines = _lines(follower.stdout)

        def send(key: str, *call: str) -> None:
            cli("send", "--write-key", key, "--url", server.url, *call)

        send(server.write_key, "track", "First", "--user-id", "u1")
        (first,) = _take(lines, 1)
        assert first["event"]["event"] == "First"
        send(other, "track", "Other source", "--user-id", "u1")
        send(server.write_key, "identify", "--user-id", "u1")
        send(server.write_key, "track", "Second", "--user-id", "u1")
        (second,) = _take(lines, 1)
        assert second["event"]["event"] == "Second" and second["seq"] > first["seq"]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 0
        assert follower.stderr is not None and "Traceback" not in follower.stderr.read()
        assert lines.empty(), "only the source's track events are printed"
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        server.stop()


def test_follow_starts_after_the_given_seq_and_stops_at_the_limit(tmp_path: Path) -> None:
    _store_events(tmp_path, 5)
    out = cli("events", "--follow", "--json", "--after", "1", "--limit", "3", "--data-dir", str(tmp_path))
    assert [msgspec.json.decode(line)["messageId"] for line in out.split("\n") if line] == ["m1", "m2", "m3"]

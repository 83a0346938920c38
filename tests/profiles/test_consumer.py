"""The consumer: one per data dir, resumes after a restart or a kill without applying anything twice."""

from __future__ import annotations

import signal
from pathlib import Path

import msgspec

from tests.conftest import Server, cli, start_server
from tests.profiles.conftest import TOKEN, caught_up, get, segment
from trackyard.storage.sqlite.profiles import SQLiteProfiles


def _send(srv: Server, start: int, count: int) -> None:
    calls = [
        {
            "type": "identify",
            "userId": "u",
            "anonymousId": f"a{i % 3}",
            "traits": {"n": i},
            "messageId": f"m{i}",
        }
        for i in range(start, start + count)
    ]
    for chunk in range(0, len(calls), 100):
        segment(srv, *calls[chunk : chunk + 100])


def _snapshot(data_dir: Path) -> dict[str, list[object]]:
    profiles = SQLiteProfiles(data_dir)
    try:
        return profiles.snapshot()
    finally:
        profiles.close()


def test_the_consumer_resumes_after_a_restart_and_a_kill(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--admin-token", TOKEN)
    try:
        _send(srv, 0, 300)
        caught_up(srv)
        srv.stop()  # SIGTERM: a clean stop
        srv.start()
        _send(srv, 300, 2000)
        srv.stop(signal.SIGKILL)  # most likely in the middle of a batch
        srv.start()
        _send(srv, 2300, 200)
        status = caught_up(srv)
        assert status["processed"] == status["cursor"] == 2500
        profile = get(srv, "/v1/profiles/user_id:u").json()
        assert profile["event_count"] == 2500  # nothing applied twice, nothing skipped
        assert profile["traits"]["n"] == 2499
        history = get(srv, "/v1/profiles/user_id:u/traits", history="1").json()["history"]["n"]
        assert [w["value"] for w in history] == list(range(2500))
    finally:
        srv.stop()
    # The same as a rebuild from scratch.
    before = _snapshot(srv.data_dir)
    assert "rebuilt profiles from 2500 events" in cli("profiles", "rebuild", "--data-dir", str(srv.data_dir))
    assert _snapshot(srv.data_dir) == before


def test_one_consumer_among_several_workers_and_an_online_rebuild(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--admin-token", TOKEN, "--workers", "2")
    try:
        _send(srv, 0, 500)
        status = caught_up(srv)
        assert status["processed"] == 500 and status["running"]
        before = _snapshot(srv.data_dir)
        out = cli("profiles", "rebuild", "--data-dir", str(srv.data_dir), "--timeout", "60")
        assert "rebuilt profiles from 500 events" in out
        assert _snapshot(srv.data_dir) == before
        shown = msgspec.json.decode(cli("profiles", "status", "--json", "--data-dir", str(srv.data_dir)))
        assert shown["lag"] == 0 and shown["running"] is True
    finally:
        srv.stop()

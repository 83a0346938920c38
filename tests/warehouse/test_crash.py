"""SIGKILL the loader again and again while events keep arriving: exactly one row per messageId.

Each batch commits with its cursor in one warehouse transaction, so a killed
``trackyard warehouse sync`` leaves a committed prefix of the log, and the next run goes
on from there. The kill times are random (seeded); nothing waits on them for correctness.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server
from trackyard.warehouse import WarehouseSink


def _send(server: Server, n: int) -> None:
    batch = [
        {"type": "track", "messageId": f"c-{uuid.uuid4().hex}", "userId": f"u{i % 7}", "event": "Load Tick",
         "properties": {"i": i, "tag": ["x"]}}
        for i in range(n)
    ]  # fmt: skip
    r = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.write_key, ""), timeout=30)
    assert r.status_code == 200, r.text


def _sync(data_dir: Path, url: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    env.pop("TRACKYARD_WAREHOUSE", None)
    if url:
        env["TRACKYARD_WAREHOUSE"] = url
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackyard",
            "warehouse",
            "sync",
            "--data-dir",
            str(data_dir),
            "--batch-size",
            "40",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_sigkill_loop_under_load_leaves_one_row_per_message_id(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_dsn") if backend == "postgresql" else None
    server = start_server(tmp_path / "data")
    try:
        for _ in range(10):
            _send(server, 200)
        stop = threading.Event()
        errors: list[BaseException] = []

        def load() -> None:
            try:
                while not stop.is_set():
                    _send(server, 50)
            except BaseException as error:  # reported by the test below
                errors.append(error)

        sender = threading.Thread(target=load)
        sender.start()
        rng = random.Random(14)
        killed = 0
        try:
            for _ in range(8):
                process = _sync(server.data_dir, url)
                try:
                    process.wait(timeout=rng.uniform(0.3, 2.5))
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    killed += 1
        finally:
            stop.set()
            sender.join()
        assert not errors
        assert killed > 0, "no run was killed mid-load: the test proved nothing"
        final = _sync(server.data_dir, url)
        assert final.wait(timeout=300) == 0
        stored = [e["messageId"] for e in server.events(type="track")]
        sink = WarehouseSink.open(url, server.data_dir)
        try:
            _, rows = sink.backend.query("SELECT count(*), count(DISTINCT id) FROM load_tick")
            _, ids = sink.backend.query("SELECT id FROM tracks")
            assert rows[0] == (len(stored), len(stored))
            assert sorted(i for (i,) in ids) == sorted(stored)
            assert sink.position() == len(server.events())
        finally:
            sink.close()
    finally:
        server.stop()

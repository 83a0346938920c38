"""What a 200 promises, checked against a real server process."""

from __future__ import annotations

import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import start_server


def test_an_acknowledged_event_survives_sigkill(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    response = httpx.post(
        f"{server.url}/v1/track",
        json={"userId": "u", "event": "Paid", "messageId": "m-1"},
        auth=(server.write_key, ""),
    )
    assert response.status_code == 200
    server.stop(signal.SIGKILL)
    server.start()
    try:
        assert [e["messageId"] for e in server.events()] == ["m-1"]
        with sqlite3.connect(server.data_dir / "trackyard.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        server.stop()


def test_a_saturated_writer_answers_429_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"TRACKYARD_MAX_PENDING_EVENTS": "1"})
    blocker = sqlite3.connect(server.data_dir / "trackyard.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    answers: list[httpx.Response] = []
    answered = threading.Semaphore(0)

    def send(i: int) -> None:
        answers.append(
            httpx.post(
                f"{server.url}/v1/track",
                json={"userId": "u", "event": f"E{i}"},
                auth=(server.write_key, ""),
                timeout=60,
            )
        )
        answered.release()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        # One request waits for the locked store; the two others are refused at once.
        assert answered.acquire(timeout=30) and answered.acquire(timeout=30)
        assert [a.status_code for a in answers] == [429, 429]
        assert all(a.headers["Retry-After"] == "1" and a.json()["code"] == "overloaded" for a in answers)
    finally:
        blocker.execute("COMMIT")
        for t in threads:
            t.join(timeout=30)
        server.stop()
    assert sorted(a.status_code for a in answers) == [200, 429, 429]
    assert len(server.events()) == 1


def test_two_workers_share_the_store_and_dedup_across_processes(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--workers", "2")
    try:
        # Every message is sent twice at once, so the copies often land on different workers.
        messages = [{"userId": "u", "event": "E", "messageId": f"m-{i}"} for i in range(60)]

        def send(message: dict[str, str]) -> int:
            return httpx.post(
                f"{server.url}/v1/track", json=message, auth=(server.write_key, ""), timeout=30
            ).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(send, messages + messages))
        assert statuses == [200] * 120
        stored = server.events()
        assert sorted(e["messageId"] for e in stored) == sorted(m["messageId"] for m in messages)
    finally:
        assert server.stop() == 0

"""A full disk: 503 with Retry-After (never a false 200), the server stays up, and writes
resume by themselves once space returns; nothing stored is damaged."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from scripts.faults import fill, integrity, stored_marks, tmpfs

from tests.conftest import start_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _batch(prefix: str, n: int, size: int = 1000) -> dict[str, object]:
    return {
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "messageId": f"{prefix}{i}",
             "properties": {"fid": f"{prefix}{i}", "pad": "x" * size}}
            for i in range(n)
        ]
    }  # fmt: skip


def test_a_full_disk_answers_503_and_writes_resume_when_space_returns(tmp_path: Path) -> None:
    with tmpfs("2m") as mount:
        server = start_server(mount / "data")
        acked: set[str] = set()
        try:
            http = httpx.Client(base_url=server.url, auth=(server.write_key, ""), timeout=30)
            assert http.post("/v1/batch", json=_batch("before-", 20)).status_code == 200
            acked |= {f"before-{i}" for i in range(20)}
            fill(mount / "filler")
            refused = None
            for attempt in range(50):
                answer = http.post("/v1/batch", json=_batch(f"full{attempt}-", 20))
                if answer.status_code == 200:
                    acked |= {f"full{attempt}-{i}" for i in range(20)}  # it must then be stored
                    continue
                refused = answer
                break
            assert refused is not None, "the disk never filled up"
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["code"] == "store_unavailable"
            assert http.get("/healthz").status_code == 200
            (mount / "filler").unlink()
            deadline = time.monotonic() + 30
            while (answer := http.post("/v1/batch", json=_batch("after-", 20))).status_code != 200:
                assert answer.status_code == 503 and time.monotonic() < deadline
                time.sleep(0.05)
            acked |= {f"after-{i}" for i in range(20)}
        finally:
            assert server.stop() == 0
        db = server.data_dir / "trackyard.db"
        assert integrity(db) == "ok"
        stored = stored_marks(db)
        assert {m for m in acked if stored[m] != 1} == set()
        assert all(n == 1 for n in stored.values())


def test_readyz_says_unavailable_while_the_disk_is_full(tmp_path: Path) -> None:
    with tmpfs("2m") as mount:
        server = start_server(mount / "data")
        try:
            http = httpx.Client(base_url=server.url, auth=(server.write_key, ""), timeout=30)
            # The first answer proves the app has opened its store (before the disk is full).
            assert http.get("/readyz").status_code == 200
            fill(mount / "filler")
            for attempt in range(50):
                if http.post("/v1/batch", json=_batch(f"f{attempt}-", 20)).status_code == 503:
                    break
            else:
                pytest.fail("the disk never filled up")
            assert http.get("/readyz").status_code == 503
            (mount / "filler").unlink()
            deadline = time.monotonic() + 30
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            server.stop()

"""SIGKILL of one destination's process, again and again, while it delivers to a deduping
receiver (a second trackyard): every event arrives, the receiver stores each once, and
another destination's process goes on meanwhile. Both destinations are added while
``serve`` already runs (the first destination of the data dir included)."""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from tests.destinations.conftest import Receiver, poll
from tests.faults._group import Group

_EVENTS = 600


def _delivery_pid(group: Group, not_this: int | None = None) -> int:
    found: list[int] = []

    def started() -> bool:
        for pid in group.consumer_pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"destination:to-b" in cmdline and pid != not_this:
                found.append(pid)
                return True
        return False

    poll(started, timeout=30)
    return found[0]


def _more_than(server: Server, count: int) -> bool:
    return len(server.events()) > count


def send_and_kill_delivery(
    a: Group,
    a_key: str,
    b: Server,
    sent: list[dict[str, Any]],
    between_kills: Callable[[], None] = lambda: None,
) -> None:
    """Send ``sent`` to A in batches of 100, SIGKILL the process delivering to B (``to-b``) up to
    three times while it delivers, then check B stored every event exactly once."""
    for start in range(0, len(sent), 100):
        response = httpx.post(
            f"{a.url}/v1/batch", json={"batch": sent[start : start + 100]}, auth=(a_key, "")
        )
        assert response.status_code == 200, response.text
    pid: int | None = None
    kills = 0
    for _ in range(3):
        pid = _delivery_pid(a, not_this=pid)
        seen = len(b.events())
        if seen >= len(sent):
            break
        poll(partial(_more_than, b, seen), timeout=30)  # it is delivering: kill it mid-way
        os.kill(pid, signal.SIGKILL)
        kills += 1
        between_kills()
    poll(lambda: len(b.events()) >= len(sent), timeout=90)
    stored = [e["messageId"] for e in b.events()]
    assert sorted(stored) == sorted(e["messageId"] for e in sent)  # all there, none twice
    assert kills >= 1, "delivery finished before a kill: the test proved nothing"


@pytest.mark.usefixtures("fast_retries")
def test_sigkilled_delivery_loses_nothing_and_the_receiver_stores_each_event_once(tmp_path: Path) -> None:
    b = start_server(tmp_path / "b")
    a_dir = tmp_path / "a"
    a_key = cli("sources", "add", "web", "--data-dir", str(a_dir)).strip()
    auth = base64.b64encode(f"{b.write_key}:".encode()).decode()
    a = Group(a_dir, "serve", "--port", "0", log=tmp_path / "a.log")
    steady = Receiver()
    # One event a request to B's /v1/track: slow enough to be killed in the middle of it.
    cli(
        "destinations",
        "add",
        "to-b",
        "--format",
        "webhook",
        "--url",
        f"{b.url}/v1/track",
        "--batch-size",
        "1",
        "--header",
        f"Authorization: Basic {auth}",
        "--data-dir",
        str(a_dir),
    )
    cli("destinations", "add", "steady", "--format", "webhook", "--url", steady.url, "--data-dir", str(a_dir))
    try:
        sent = [
            {"type": "track", "event": "Tick", "messageId": f"k{i}", "userId": f"u{i % 5}"}
            for i in range(_EVENTS)
        ]
        # The other destination's process is not touched: it has everything already.
        send_and_kill_delivery(
            a, a_key, b, sent, lambda: poll(lambda: _steady_count(steady) == _EVENTS, timeout=30)
        )
    finally:
        a.signal_group(signal.SIGTERM)
        a.wait_gone(60)
        b.stop()
        steady.close()


def _steady_count(steady: Receiver) -> int:
    return len({e["messageId"] for r in steady.delivered() for e in r.json()})

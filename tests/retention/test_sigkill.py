"""SIGKILL during compaction and pruning: a child does both in a loop and is killed at random
points; every event that should be kept reads back byte-identical, the database passes
``PRAGMA integrity_check``, and a restart resumes."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.retention.conftest import DAY_MS, event_json, everything
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import Backends

_ROUNDS = 8
_PER_ROUND = 3_000  # events received 40 days ago, then as many received now, each round


def maintaining_child(data_dir: Path, mode: str, *state_url: str) -> subprocess.Popen[str]:
    """``_maintain.py`` in a child process, once its connections are open."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.retention._maintain", str(data_dir), mode, *state_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    return child


def append_recorded(backends: Backends, ids: range, received_ms: int, written: dict[str, bytes]) -> None:
    rng = random.Random(ids.start)
    for first in range(ids.start, ids.stop, 100):
        events = []
        for i in range(first, min(first + 100, ids.stop)):
            body = event_json(i, rng)
            written[f"m-{i}"] = body
            events.append(EventRecord(1, f"m-{i}", "track", received_ms, body))
        asyncio.run(backends.log.append(events, []))


def _check(backends: Backends, written: dict[str, bytes], recent: set[str]) -> None:
    conn = sqlite3.connect(backends.settings.data_dir / "trackyard.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    check_kept(backends, written, recent)


def check_kept(backends: Backends, written: dict[str, bytes], recent: set[str]) -> None:
    """The log is dense up to its head, byte-identical to what was written, with every recent event."""
    kept = everything(backends)
    seqs = [e.seq for e in kept]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # dense: no hole anywhere
    assert seqs[-1] == backends.log.head_seq()
    by_id = {}
    for stored in kept:
        message_id = stored.body.split(b'"messageId":"', 1)[1].split(b'"', 1)[0].decode()
        assert stored.body == written[message_id]  # byte-identical
        by_id[message_id] = stored
    assert recent <= by_id.keys(), f"{len(recent - by_id.keys())} recent events lost"


def test_sigkill_during_compaction_and_pruning_loses_nothing_kept(backends: Backends) -> None:
    rng = random.Random(18)
    data_dir = backends.settings.data_dir
    written: dict[str, bytes] = {}
    recent: set[str] = set()
    now = int(time.time() * 1000)
    next_id = 0
    killed_busy = 0
    for _ in range(_ROUNDS):
        append_recorded(backends, range(next_id, next_id + _PER_ROUND), now - 40 * DAY_MS, written)
        next_id += _PER_ROUND
        append_recorded(backends, range(next_id, next_id + _PER_ROUND), now, written)
        recent |= {f"m-{i}" for i in range(next_id, next_id + _PER_ROUND)}
        next_id += _PER_ROUND
        child = maintaining_child(data_dir, "loop")
        time.sleep(rng.uniform(0.0, 0.4))  # the kill point, not a wait for anything
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_busy += child.returncode == -signal.SIGKILL
        _check(backends, written, recent)
    assert killed_busy == _ROUNDS
    # A restart resumes: run to the end, then every cold row is compacted and the only old
    # events left are those behind recent ones (retention drops from the oldest end only).
    finisher = maintaining_child(data_dir, "once")
    assert finisher.wait(timeout=300) == 0
    _check(backends, written, recent)
    kept = everything(backends)
    assert kept[0].body == written[f"m-{_PER_ROUND}"]  # the first old range is gone
    # The dedup window held through it all: every recent event is still a duplicate.
    retried = [EventRecord(1, m, "track", now, b"{}") for m in sorted(recent)[:2000]]
    assert asyncio.run(backends.log.append(retried, [])).duplicates == 2000

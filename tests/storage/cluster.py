"""What the scale-out tests share: clients behind a load balancer, ``trackyard consume`` as a
killable process, reading the marks back from a log, and the chaos they run under load.

A "mark" is the id ``scripts/faults.py`` puts in each generated event's properties or
traits; the tests count marks in the log, in the profiles' input and at a destination.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
from scripts.faults import Clients, Load, Tally, mark_of

from tests.conftest import Server
from tests.profiles.conftest import at
from tests.storage.nats_servers import NatsServers, wait_until
from trackyard.profiles.facts import PERSON, make_key
from trackyard.profiles.storage import ProfileStore
from trackyard.storage.base import EventLog


class Balanced(Clients):
    """The fault suite's clients behind a load balancer: each try goes to a live collector."""

    live: list[str]

    @property
    def url(self) -> str:
        return random.choice(self.live)

    @url.setter
    def url(self, value: str) -> None:
        if value:
            self.live = [value]


class Consumer:
    """``trackyard consume NAME... ARGS...`` in a process group of its own (its children die with it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "trackyard", "consume", *args]
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Consumer:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=log, env=self.env, start_new_session=True
            )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def started(self, name: str) -> bool:
        """Whether this process's supervisor has started consumer ``name`` (so holds its lease)."""
        return f"consumer {name} started" in self.log.read_text(errors="replace")


def stored_marks(log: EventLog) -> Counter[str]:
    """How many times each marked event is in the log, read page by page."""
    counts: Counter[str] = Counter()
    cursor = 0
    while page := log.read_events(after=cursor, limit=1000):
        for stored in page:
            if (mark := mark_of(msgspec.json.decode(stored.body))) is not None:
                counts[mark] += 1
        cursor = page[-1].seq
    return counts


def assert_stored_once(log: EventLog, tally: Tally) -> Counter[str]:
    """Every acknowledged event is in ``log`` exactly once, no rejected one is; the counts."""
    assert not [u for u in tally.unexpected if not u.startswith("503")], tally.unexpected[:10]
    assert tally.acknowledged
    stored = stored_marks(log)
    assert {m for m in tally.acknowledged if stored[m] == 0} == set(), "acknowledged but lost"
    assert {m for m, n in stored.items() if n > 1} == set(), "stored twice"
    assert {m for m in tally.rejected if stored[m]} == set(), "rejected but stored"
    assert set(stored) == tally.acknowledged  # every call was retried to a final answer
    return stored


def identify_batch(start: int, count: int) -> dict[str, object]:
    """A ``/v1/batch`` body of ``count`` identifies of user ``u``, trait ``n`` counting up."""
    return {
        "batch": [
            {"type": "identify", "userId": "u", "traits": {"n": i}, "messageId": f"m{i}", "timestamp": at(i)}
            for i in range(start, start + count)
        ]
    }


def assert_applied_once(profiles: ProfileStore, count: int) -> None:
    """The ``count`` identifies of :func:`identify_batch` were each applied once to user ``u``."""
    assert profiles.progress().processed == count
    pid = profiles.resolve_key(make_key(PERSON, "user_id", "u"))
    assert pid is not None
    profile = profiles.profile(pid)
    assert profile is not None and profile.event_count == count  # nothing applied twice
    assert profile.traits["n"][0] == count - 1


def stop_all(*processes: Server | Consumer) -> None:
    """Stop whatever still runs (SIGTERM: a consumer commits its batch first)."""
    for process in processes:
        if isinstance(process, Server):
            if process.process is not None and process.process.poll() is None:
                process.stop()
        elif process.running():
            process.kill(signal.SIGTERM)


async def chaos(
    cluster: NatsServers, collectors: list[Server], consumer: Consumer, key: str, tally: Tally, rounds: int
) -> None:
    """A mixed load of the four formats on both collectors while, each round, a NATS node
    (possibly the stream's leader), then a collector (mid-request), and every other round the
    consumer, are SIGKILLed and restarted. Returns when every client's call has a final answer."""
    rng = random.Random(15)
    pool = Balanced(Load(key, rng), tally, 6, allow_503=True)
    pool.live = [c.url for c in collectors]
    pool.up.set()
    runner = asyncio.create_task(pool.run())

    async def load_for(n: int) -> None:
        """Wait until ``n`` more events are acknowledged: every phase runs under load."""
        start = len(tally.acknowledged)
        await asyncio.to_thread(
            wait_until, lambda: len(tally.acknowledged) >= start + n, f"{n} more acks", 60
        )

    try:
        for round_ in range(rounds):
            await load_for(300)
            cluster.kill(round_ % 3)
            await load_for(300)
            victim = collectors[round_ % 2]
            pool.live = [c.url for c in collectors if c is not victim]
            victim.stop(signal.SIGKILL)
            await load_for(200)
            if round_ % 2 == 0:
                consumer.kill()
                consumer.start()
            await asyncio.to_thread(victim.start)
            await asyncio.to_thread(cluster.start, round_ % 3)
            pool.live = [c.url for c in collectors]
        await load_for(300)
    finally:
        # Every client finishes (retries to a final answer) the call it holds, then stops.
        await pool.drain(runner)

"""Scale-out on a real three-node JetStream cluster: two collectors, one shared state, SIGKILLs.

Three ``nats-server`` processes clustered on loopback hold an R3 stream; two ``trackyard serve
--role ingest`` processes publish to it (``TRACKYARD_LOG``) and share the state of one data
dir; ``trackyard consume profiles`` builds profiles from the stream. Clients send a mixed
load of the four formats (``scripts/faults.py``) to either collector, as a load balancer
would, and retry what was not acknowledged. A NATS node, then a collector, then the
consumer are SIGKILLed and restarted, several times. Afterwards every acknowledged event
is in the stream exactly once, no rejected one is, and the profiles equal a rebuild from
the stream (nothing applied twice, nothing skipped).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from scripts.faults import MARK, Clients, Load, Tally

from tests.conftest import Server, cli
from tests.storage.nats_servers import NatsServers, nats_servers, wait_until
from trackyard.config import Settings
from trackyard.storage.factory import Backends, open_backends


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
    """``trackyard consume profiles`` in a process group of its own (its child dies with it)."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "trackyard", "consume", "profiles", "--data-dir", str(data_dir)]
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=log, env=self.env, start_new_session=True
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsServers]:
    with nats_servers(tmp_path / "nats", size=3) as servers:
        yield servers


def stored_marks(backends: Backends) -> Counter[str]:
    """How many times each marked event is in the log, read page by page from the stream."""
    counts: Counter[str] = Counter()
    cursor = 0
    while page := backends.log.read_events(after=cursor, limit=1000):
        for stored in page:
            event = msgspec.json.decode(stored.body)
            for key in ("properties", "traits"):
                bag = event.get(key)
                if isinstance(bag, dict) and isinstance(bag.get(MARK), str):
                    counts[bag[MARK]] += 1
                    break
        cursor = page[-1].seq
    return counts


async def _chaos(
    cluster: NatsServers, collectors: list[Server], consumer: Consumer, key: str, tally: Tally, rounds: int
) -> None:
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
            cluster.kill(round_ % 3)  # a NATS node: possibly the stream's leader
            await load_for(300)
            victim = collectors[round_ % 2]
            pool.live = [c.url for c in collectors if c is not victim]
            victim.stop(signal.SIGKILL)  # a collector, in the middle of requests
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


def test_acknowledged_events_are_stored_and_applied_once_through_node_and_collector_kills(
    tmp_path: Path, cluster: NatsServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRACKYARD_LOG": cluster.url}
    key = cli("sources", "add", "test", "--data-dir", str(data)).strip()
    collectors = [Server(data, "--role", "ingest", env=env) for _ in range(2)]
    for collector in collectors:
        collector.log = tmp_path / f"collector-{collectors.index(collector)}.log"
        collector.start()
    consumer = Consumer(data, env, tmp_path / "consumer.log")
    consumer.start()
    tally = Tally()
    try:
        asyncio.run(_chaos(cluster, collectors, consumer, key, tally, rounds=3))
    finally:
        for collector in collectors:
            if collector.process is not None and collector.process.poll() is None:
                collector.stop()
    assert not [u for u in tally.unexpected if not u.startswith("503")], tally.unexpected[:10]
    assert tally.acknowledged
    print(
        "DEBUG",
        len(tally.acknowledged),
        tally.requests,
        tally.retries,
        dict(tally.statuses),
        tally.unexpected[:3],
    )

    backends = open_backends(Settings(data_dir=data, log_url=cluster.url))
    try:
        stored = stored_marks(backends)
        assert {m for m in tally.acknowledged if stored[m] == 0} == set(), "acknowledged but lost"
        assert {m for m, n in stored.items() if n > 1} == set(), "stored twice"
        assert {m for m in tally.rejected if stored[m]} == set(), "rejected but stored"
        assert set(stored) == tally.acknowledged  # every call was retried to a final answer
        head = backends.log.head_seq()
        profiles = backends.profiles()
        wait_until(lambda: profiles.progress().cursor == head, "the profiles consumer to catch up", 60)
        consumer.kill(signal.SIGTERM)
        progress = profiles.progress()
        assert progress.processed == head == sum(stored.values())
        built = profiles.snapshot()
    finally:
        backends.close()
    # Nothing applied twice or skipped: the consumer's profiles equal a rebuild from the stream.
    monkeypatch.setenv("TRACKYARD_LOG", cluster.url)
    assert f"rebuilt profiles from {head} events" in cli("profiles", "rebuild", "--data-dir", str(data))
    backends = open_backends(Settings(data_dir=data, log_url=cluster.url))
    try:
        assert backends.profiles().snapshot() == built
    finally:
        backends.close()

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
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripts.faults import Tally

from tests.conftest import Server, cli
from tests.storage.cluster import Consumer, assert_stored_once, chaos, stop_all
from tests.storage.nats_servers import NatsServers, nats_servers, wait_until
from trackyard.config import Settings
from trackyard.storage.factory import open_backends


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsServers]:
    with nats_servers(tmp_path / "nats", size=3) as servers:
        yield servers


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
    consumer = Consumer(["profiles", "--data-dir", str(data)], env, tmp_path / "consumer.log")
    consumer.start()
    tally = Tally()
    try:
        asyncio.run(chaos(cluster, collectors, consumer, key, tally, rounds=3))
    finally:
        stop_all(*collectors)
    backends = open_backends(Settings(data_dir=data, log_url=cluster.url))
    try:
        stored = assert_stored_once(backends.log, tally)
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

"""Stateless collectors: a three-node JetStream R3 log and the state in PostgreSQL.

Two ``trackyard serve --role ingest`` processes with nothing but ``TRACKYARD_LOG`` (the three
nodes) and ``TRACKYARD_STATE`` (a fresh database), as behind a load balancer; ``trackyard
consume profiles destinations`` with the same two URLs builds the profiles and delivers to a
webhook receiver in the test. Under a mixed load of the four formats (clients retrying what
was not acknowledged), a NATS node, then a collector, then the consumer are SIGKILLed and
restarted. Every acknowledged event is in the log exactly once and reaches the profiles
exactly once and the destination (which dedups by mark, as a receiver dedups by messageId)
at least once. A source added through the CLI is accepted by both collectors; dedup holds
across the collectors and across a restart of everything. Then consumer failover: two
``trackyard consume`` processes, the lease holder SIGKILLed, the other takes over.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from scripts.faults import Tally, mark_of

from tests.conftest import Server, cli
from tests.destinations.conftest import Receiver
from tests.pg_databases import fresh_database
from tests.storage.cluster import (
    Consumer,
    assert_applied_once,
    assert_stored_once,
    chaos,
    identify_batch,
    stop_all,
)
from tests.storage.nats_servers import NatsServers, nats_servers, wait_until
from trackyard.config import Settings
from trackyard.storage.factory import Backends, open_backends


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsServers]:
    with nats_servers(tmp_path / "nats", size=3) as servers:
        yield servers


@pytest.fixture
def urls(cluster: NatsServers, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """``TRACKYARD_LOG`` and ``TRACKYARD_STATE`` for the in-process CLI and every process."""
    with fresh_database() as dsn:
        env = {"TRACKYARD_LOG": cluster.url, "TRACKYARD_STATE": dsn}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env


def _reader(tmp_path: Path, urls: dict[str, str]) -> Backends:
    return open_backends(
        Settings(
            data_dir=tmp_path / "reader", state_url=urls["TRACKYARD_STATE"], log_url=urls["TRACKYARD_LOG"]
        )
    )


def _post(node: Server, key: str, ids: list[str]) -> httpx.Response:
    batch = [{"type": "track", "event": "Checked", "userId": "d", "messageId": i} for i in ids]
    return httpx.post(f"{node.url}/v1/batch", json={"batch": batch}, auth=(key, ""), timeout=30)


def _delivered_marks(receiver: Receiver) -> set[str]:
    marks: set[str] = set()
    for request in receiver.delivered():
        body = msgspec.json.decode(request.body)
        for event in body if isinstance(body, list) else [body]:
            if (mark := mark_of(event)) is not None:
                marks.add(mark)
    return marks


def _accepts(node: Server, key: str) -> bool:
    return _post(node, key, ["probe"]).status_code == 200


def test_stateless_collectors_keep_every_acknowledged_event_once_through_node_and_collector_kills(
    tmp_path: Path, cluster: NatsServers, urls: dict[str, str]
) -> None:
    admin = str(tmp_path / "admin")
    key = cli("sources", "add", "web", "--data-dir", admin).strip()
    receiver = Receiver()
    cli("destinations", "add", "sink", "--format", "webhook", "--url", receiver.url, "--data-dir", admin)
    collectors = [Server(tmp_path / f"collector{i}", "--role", "ingest", env=urls).start() for i in (0, 1)]
    consumer = Consumer(
        ["profiles", "destinations", "--data-dir", str(tmp_path / "consumer")],
        urls,
        tmp_path / "consumer.log",
    )
    tally = Tally()
    try:
        # A source added now (through the CLI, as on any node) is accepted by both collectors:
        # they learn it within a second (the deadline leaves slack for a loaded machine).
        late = cli("sources", "add", "late", "--data-dir", admin).strip()
        for node in collectors:
            wait_until(lambda node=node: _accepts(node, late), f"{node.url} to accept the new source", 5)
        # One dedup window across the collectors and across a restart of everything.
        ids = [f"d{i}" for i in range(40)]
        assert _post(collectors[0], key, ids).status_code == 200
        assert _post(collectors[1], key, ids[20:]).status_code == 200
        stop_all(*collectors)
        cluster.stop()
        cluster.start()
        for node in collectors:
            node.start()
        assert _post(collectors[1], key, [*ids[:10], "d-last"]).status_code == 200

        consumer.start()
        asyncio.run(chaos(cluster, collectors, consumer, key, tally, rounds=2))
    finally:
        stop_all(*collectors)
    backends = _reader(tmp_path, urls)
    try:
        checked = [e for e in backends.log.read_events(limit=100_000) if e.type == "track"]
        ids_stored = [msgspec.json.decode(e.body).get("messageId") for e in checked]
        assert sorted(i for i in ids_stored if str(i).startswith("d")) == sorted([*ids, "d-last"])
        stored = assert_stored_once(backends.log, tally)
        head = backends.log.head_seq()
        profiles = backends.profiles()
        wait_until(lambda: profiles.progress().cursor == head, "the profiles consumer to catch up", 60)
        wait_until(
            lambda: _delivered_marks(receiver) >= set(stored), "the destination to get every event", 60
        )
        consumer.kill(signal.SIGTERM)
        # Exactly once into the profiles: each event of the log counted once.
        assert profiles.progress().processed == head
        # The destination, deduplicating, has every acknowledged event and nothing else.
        assert _delivered_marks(receiver) == tally.acknowledged
    finally:
        stop_all(consumer)
        backends.close()
        receiver.close()


def test_a_killed_consumer_lease_holder_is_replaced_and_nothing_is_applied_twice(
    tmp_path: Path, cluster: NatsServers, urls: dict[str, str]
) -> None:
    env = {**urls, "TRACKYARD_PROFILES_BATCH_SIZE": "100"}
    key = cli("sources", "add", "web", "--data-dir", str(tmp_path / "admin")).strip()
    collector = Server(tmp_path / "collector", "--role", "ingest", env=env).start()
    consumers = [
        Consumer(
            ["profiles", "--data-dir", str(tmp_path / f"c{i}")], env, tmp_path / f"consume-{i}.log"
        ).start()
        for i in (0, 1)
    ]
    backends = _reader(tmp_path, urls)
    try:
        profiles = backends.profiles()
        post = httpx.Client(base_url=collector.url, auth=(key, ""), timeout=30)
        assert post.post("/v1/batch", json=identify_batch(0, 300)).status_code == 200
        wait_until(lambda: profiles.progress().cursor == 300, "a consumer built the profiles", 60)
        wait_until(lambda: any(c.started("profiles") for c in consumers), "a supervisor to report its lease")
        holder, other = consumers if consumers[0].started("profiles") else consumers[::-1]
        assert not other.started("profiles"), "both consumers hold the lease"
        for start in range(300, 3300, 500):
            assert post.post("/v1/batch", json=identify_batch(start, 500)).status_code == 200
        wait_until(lambda: profiles.progress().cursor > 300, "the holder works on the new events")
        holder.kill()  # SIGKILL the supervisor and its consumer process at once
        at_kill = profiles.progress().cursor
        assert at_kill < 3300, "the holder finished before it was killed: nothing was taken over"
        wait_until(lambda: other.started("profiles"), "the other consumer to take the lease", 30)
        wait_until(lambda: profiles.progress().cursor == 3300, "the other consumer to catch up", 90)
        assert backends.log.head_seq() == 3300
        assert_applied_once(profiles, 3300)
    finally:
        stop_all(collector, *consumers)
        backends.close()

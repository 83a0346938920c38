"""Several nodes on one PostgreSQL state: real ``trackyard serve`` and ``trackyard consume``
processes on free loopback ports, each with a data dir of its own, sharing only the database.

A source added on one node is accepted by the others; dedup holds across nodes and across a
restart of everything; a consumer's lease moves to another node when its holder is killed,
and nothing is applied twice.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.conftest import Server, cli
from tests.pg_databases import fresh_database
from tests.storage.cluster import assert_applied_once, identify_batch
from trackyard.config import Settings
from trackyard.storage.factory import open_backends


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database, named in ``TRACKYARD_STATE`` for the in-process CLI and the nodes."""
    with fresh_database() as dsn:
        monkeypatch.setenv("TRACKYARD_STATE", dsn)
        yield dsn


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _batch(key: str, node: Server, ids: list[str]) -> httpx.Response:
    batch = [{"type": "track", "event": "Clicked", "userId": "u", "messageId": i} for i in ids]
    return httpx.post(f"{node.url}/v1/batch", json={"batch": batch}, auth=(key, ""), timeout=30)


def _stored_ids(dsn: str, tmp: Path) -> list[str]:
    backends = open_backends(Settings(data_dir=tmp / "reader", state_url=dsn))
    try:
        return [e["messageId"] for e in (_decode(x.body) for x in backends.log.read_events(limit=100_000))]
    finally:
        backends.close()


def _decode(body: bytes) -> dict[str, str]:
    decoded: dict[str, str] = msgspec.json.decode(body)
    return decoded


def test_nodes_share_sources_and_one_dedup_window_across_a_restart_of_everything(
    state: str, tmp_path: Path
) -> None:
    nodes = [Server(tmp_path / f"node{i}", "--role", "ingest", "--state", state).start() for i in (1, 2)]
    try:
        # A source added now (through the CLI, as on a third node) is accepted by both.
        key = cli("sources", "add", "web", "--data-dir", str(tmp_path / "admin")).strip()
        for node in nodes:

            def accepted(node: Server = node) -> bool:
                return _batch(key, node, ["warm"]).status_code == 200

            _until(accepted, "the node knows the key")
        # The same messageIds through both nodes are stored once.
        ids = [f"m{i}" for i in range(50)]
        assert _batch(key, nodes[0], ids).status_code == 200
        assert _batch(key, nodes[1], ids[25:] + [f"n{i}" for i in range(5)]).status_code == 200
        for node in nodes:
            node.stop()
        # Everything restarts: the window is in PostgreSQL, not in a node's memory.
        nodes = [node.start() for node in nodes]
        assert _batch(key, nodes[1], ids[:10] + ["last"]).status_code == 200
    finally:
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.stop()
    stored = _stored_ids(state, tmp_path)
    assert sorted(stored) == sorted(["warm", *ids, *[f"n{i}" for i in range(5)], "last"])
    # ``trackyard events`` on yet another data dir reads the same log.
    assert len(cli("events", "--json", "--data-dir", str(tmp_path / "elsewhere")).splitlines()) == len(stored)


def test_a_killed_lease_holder_is_replaced_by_another_node_and_nothing_is_applied_twice(
    state: str, tmp_path: Path
) -> None:
    """Two ``serve`` nodes (collectors and consumers); SIGKILL the one whose supervisor holds
    the profile consumer's lease while it builds: the other takes over, each event once."""
    env = {"TRACKYARD_PROFILES_BATCH_SIZE": "100"}
    key = cli("sources", "add", "web", "--data-dir", str(tmp_path / "admin")).strip()
    first = Server(tmp_path / "first", "--state", state, env=env).start()
    second: Server | None = None
    reader = open_backends(Settings(data_dir=tmp_path / "reader", state_url=state))
    try:
        profiles = reader.profiles()
        post = httpx.Client(base_url=first.url, auth=(key, ""), timeout=30)
        assert post.post("/v1/batch", json=identify_batch(0, 300)).status_code == 200
        _until(lambda: profiles.progress().cursor == 300, "the first node's consumer built the profiles")
        second = Server(tmp_path / "second", "--state", state, env=env).start()
        for start in range(300, 3300, 500):  # acknowledged by the first node: in the log
            assert post.post("/v1/batch", json=identify_batch(start, 500)).status_code == 200
        _until(lambda: profiles.progress().cursor > 300, "the first node works on the new events")
        first.stop(signal.SIGKILL)  # its consumer process is told to stop, and finishes its batch
        at_kill = profiles.progress().cursor
        assert at_kill < 3300, "the first node finished before it was killed: nothing was taken over"
        _until(lambda: profiles.progress().cursor == 3300, "the second node took over and caught up", 90)
        assert_applied_once(profiles, 3300)
    finally:
        for node in (first, second):
            if node is not None and node.process is not None and node.process.poll() is None:
                node.stop()
        reader.close()

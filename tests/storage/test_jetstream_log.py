"""The JetStream log's own promises, on real ``nats-server`` processes and real collectors:
where duplicates are caught, and a 503 (not a hang) while there is no quorum."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import nats
import psycopg
import pytest
from click.testing import CliRunner

from tests.conftest import Server, cli
from tests.storage.conformance.conftest import append, event
from tests.storage.nats_servers import NatsServers, free_port, nats_servers, wait_until
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.errors import StoreUnavailable
from trackyard.storage import factory
from trackyard.storage.factory import open_backends


@pytest.fixture
def single(tmp_path: Path) -> Iterator[NatsServers]:
    with nats_servers(tmp_path / "nats", size=1) as servers:
        yield servers


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsServers]:
    with nats_servers(tmp_path / "nats", size=3) as servers:
        yield servers


def _publish_directly(url: str, subject: str, msg_id: str, body: bytes) -> None:
    async def go() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    asyncio.run(go())


def test_an_event_published_before_a_crash_is_not_stored_again_on_retry(
    tmp_path: Path, single: NatsServers
) -> None:
    # A collector that died after the publish and before remembering the key left the event
    # in the stream but not in the state's index: the client's retry (inside JetStream's
    # duplicate window) is dropped by the stream, by its Nats-Msg-Id.
    backends = open_backends(Settings(data_dir=tmp_path / "data", log_url=single.url), writer=True)
    try:
        first = event("m1")
        _publish_directly(single.url, "trackyard.trackyard_events.1.track", "1:m1", first.body)
        result = append(backends, [first, event("m2")])
        assert (result.stored, result.duplicates) == (1, 1)
        assert [e.body for e in backends.log.read_events()] == [first.body, event("m2").body]
        # Now remembered in the state: caught there, even past JetStream's window.
        assert append(backends, [event("m1")]).duplicates == 1
    finally:
        backends.close()


def test_a_publish_answered_with_an_error_is_not_taken_for_stored(
    tmp_path: Path, single: NatsServers
) -> None:
    # Another stream took the log's subjects: the server answers each publish with an error
    # (not the expected stream) instead of an ack. The append fails, remembers no key, and
    # the same event is stored once the log's stream is back.
    backends = open_backends(Settings(data_dir=tmp_path / "data", log_url=single.url), writer=True)
    subjects = ["trackyard.trackyard_events.>"]

    async def swap(drop: str, add: str) -> None:
        nc = await nats.connect(single.url)
        try:
            await nc.jetstream().delete_stream(drop)
            await nc.jetstream().add_stream(name=add, subjects=subjects)
        finally:
            await nc.close()

    try:
        asyncio.run(swap("TRACKYARD_EVENTS", "SOMEONE_ELSES"))
        with pytest.raises(StoreUnavailable, match="refused"):
            append(backends, [event("m1")])
        asyncio.run(swap("SOMEONE_ELSES", "TRACKYARD_EVENTS"))
        assert append(backends, [event("m1")]).stored == 1
        assert [e.body for e in backends.log.read_events()] == [event("m1").body]
    finally:
        backends.close()


def test_collectors_forget_dedup_keys_older_than_the_window(
    tmp_path: Path, single: NatsServers, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the log on JetStream no log writer deletes expired keys from PostgreSQL: the
    # collector's own thread does, so the table does not grow past the window.
    monkeypatch.setattr(factory, "DEDUP_EXPIRE_SECONDS", 0.05)
    settings = Settings(
        data_dir=tmp_path / "data", log_url=single.url, state_url=pg_dsn, dedup_window_seconds=1
    )
    backends = open_backends(settings, writer=True)
    try:
        assert append(backends, [event("m1"), event("m2")]).stored == 2
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            wait_until(
                lambda: conn.execute("SELECT count(*) FROM dedup_keys").fetchone() == (0,),
                "the expired keys deleted",
                10,
            )
    finally:
        backends.close()


def _segment_batch(server: Server, key: str, *message_ids: str) -> httpx.Response:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    batch = [{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": m} for m in message_ids]
    return httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": batch},
        headers={"Authorization": f"Basic {auth}"},
        timeout=30,
    )


def _stored_ids(data: Path, url: str) -> list[str]:
    backends = open_backends(Settings(data_dir=data, log_url=url))
    try:
        return [msgspec.json.decode(e.body)["messageId"] for e in backends.log.read_events()]
    finally:
        backends.close()


def test_two_collectors_share_sources_and_dedup_also_across_a_restart_of_everything(
    tmp_path: Path, cluster: NatsServers
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "TRACKYARD_LOG": cluster.url}
    key = cli("sources", "add", "web", "--data-dir", str(data)).strip()
    a, b = (Server(data, "--role", "ingest", env=env).start() for _ in range(2))
    try:
        assert _segment_batch(a, key, "m1", "m2").status_code == 200
        assert _segment_batch(b, key, "m2", "m3").status_code == 200  # m2: a duplicate from the other node
        # A source added while both run is accepted by both (their caches follow the state).
        later = cli("sources", "add", "app", "--data-dir", str(data)).strip()
        for collector in (a, b):
            wait_until(
                lambda c=collector: _segment_batch(c, later, "n1").status_code == 200, "the new source"
            )
        a.stop()
        b.stop()
        cluster.stop()
        cluster.start()
        a.start()
        b.start()
        # Retried as a client would while the restarted cluster elects the stream's leader.
        wait_until(
            lambda: _segment_batch(b, key, "m1", "m3", "m4").status_code == 200, "an ack after the restart"
        )
    finally:
        a.stop()
        b.stop()
    assert sorted(_stored_ids(data, cluster.url)) == ["m1", "m2", "m3", "m4", "n1"]


def test_without_a_quorum_a_collector_answers_503_and_takes_the_retry_once_it_is_back(
    tmp_path: Path, cluster: NatsServers
) -> None:
    data = tmp_path / "data"
    url = f"{cluster.url}?ack_timeout=2"
    key = cli("sources", "add", "web", "--data-dir", str(data)).strip()
    collector = Server(data, "--role", "ingest", env={**os.environ, "TRACKYARD_LOG": url}).start()
    try:
        assert _segment_batch(collector, key, "m1").status_code == 200
        cluster.kill(1)
        cluster.kill(2)  # one of three left: no quorum, the stream takes no writes
        refused = _segment_batch(collector, key, "m2", "m3")
        assert refused.status_code in (429, 503), refused.text
        assert refused.headers["Retry-After"]
        cluster.start(1, 2)
        wait_until(
            lambda: _segment_batch(collector, key, "m2", "m3").status_code == 200, "the quorum back", 60
        )
    finally:
        collector.stop()
    # Whatever the refused try had published before it gave up is not stored twice.
    assert _stored_ids(data, url) == ["m1", "m2", "m3"]


def test_a_command_given_an_unreachable_log_says_what_to_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("sources", "add", "web", "--data-dir", str(data))
    env = {"TRACKYARD_LOG": f"nats://user:hunter2@127.0.0.1:{free_port()}"}
    result = CliRunner().invoke(main, ["events", "--data-dir", str(data)], env=env)
    assert result.exit_code == 1
    assert (
        "cannot reach JetStream at 127.0.0.1:" in result.output
        and "nats-server runs with -js" in result.output
    )
    assert "hunter2" not in result.output

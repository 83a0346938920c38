"""The store gauges of ``/metrics`` come from the metrics consumer's cache, never from a scrape.

A ``serve --role ingest`` node runs no consumers: its scrapes serve the counters alone until
a ``trackyard consume metrics`` on its data dir writes the cache, and then the gauges
within a reading. A copy whose writer has stopped is served until it is stale, then no more.
With PostgreSQL state the consumer may run on another machine (another data dir): the
copy in the database reaches the collectors.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, cli, start_server
from tests.http.test_metrics import FAST_GAUGES, gauges_reader, scrape, scrape_until, value
from tests.pg_databases import fresh_database
from tests.storage.nats_servers import nats_servers
from trackyard.config import Settings
from trackyard.metrics.gauges import gauges_path, stale_after
from trackyard.storage.sqlite.consumers import FILENAME as CURSORS_FILE
from trackyard.storage.sqlite.store import database_path

_STORE_GAUGES = (
    "trackyard_store_gauges_timestamp_seconds",
    "trackyard_log_head_seq",
    "trackyard_store_size_bytes",
)


def _has_store_gauges(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
    return any(name in _STORE_GAUGES for name, _ in samples)


def _track(url: str, key: str, n: int) -> None:
    for _ in range(n):
        assert httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "E"}, auth=(key, "")).is_success


def test_an_ingest_node_serves_the_gauges_the_metrics_consumer_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, "--role", "ingest", env=FAST_GAUGES)
    try:
        _track(server.url, server.write_key, 3)
        alone = scrape(server.url)
        # The counters, and no store gauge: the scrape reads no store, and nothing wrote them.
        assert value(alone, "trackyard_events_stored_total", source="test", format="segment") == 3
        assert not _has_store_gauges(alone)
        with gauges_reader(data):
            first = scrape_until(server.url, lambda s: value(s, "trackyard_log_head_seq") == 3)
            assert value(first, "trackyard_consumer_lag_events", consumer="profiles") == 3
            assert value(first, "trackyard_consumer_running", consumer="metrics") == 1
            stamp = value(first, "trackyard_store_gauges_timestamp_seconds")
            assert 0 < time.time() - stamp < stale_after(Settings(data_dir=data))
            _track(server.url, server.write_key, 2)
            later = scrape_until(server.url, lambda s: value(s, "trackyard_log_head_seq") == 5)
            assert value(later, "trackyard_store_gauges_timestamp_seconds") > stamp
        # The reader has stopped: its last copy is served while it is fresh, then no more.
        kept = scrape(server.url)
        assert value(kept, "trackyard_log_head_seq") == 5
        path = gauges_path(Settings(data_dir=data))
        old = time.time() - stale_after(Settings(data_dir=data)) - 1
        os.utime(path, (old, old))
        assert not _has_store_gauges(scrape(server.url))
    finally:
        server.stop()


def test_a_scrape_answers_while_another_writer_holds_the_stores(tmp_path: Path) -> None:
    """Another process holds the write lock of the log and of the consumers' cursors (where
    reading a consumer's position opens a transaction): a scrape that read the stores would
    wait for it (30 s of busy timeout); one that reads the cache answers at once."""
    data = tmp_path / "data"
    server = start_server(data, "--role", "ingest")
    try:
        _track(server.url, server.write_key, 2)
        with gauges_reader(data):
            scrape_until(server.url, lambda s: value(s, "trackyard_log_head_seq") == 2)
        holders = [
            sqlite3.connect(path, timeout=10, isolation_level=None)
            for path in (database_path(data), data / CURSORS_FILE)
        ]
        try:
            for holder in holders:
                holder.execute("BEGIN IMMEDIATE")
            answer = httpx.get(f"{server.url}/metrics", timeout=5)
            assert answer.status_code == 200
            assert "trackyard_log_head_seq 2.0" in answer.text
        finally:
            for holder in holders:
                holder.execute("ROLLBACK")
                holder.close()
    finally:
        server.stop()


def test_with_postgresql_state_a_collector_serves_what_a_consumer_elsewhere_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_database() as dsn:
        monkeypatch.setenv("TRACKYARD_STATE", dsn)  # the in-process CLI's, and the processes'
        collector = Server(tmp_path / "collector", "--role", "ingest", env=FAST_GAUGES).start()
        try:
            collector.write_key = cli("sources", "add", "test", "--data-dir", str(tmp_path / "admin")).strip()
            _track(collector.url, collector.write_key, 4)
            assert not _has_store_gauges(scrape(collector.url))
            # The consumers' node: a data dir of its own, the same database.
            with gauges_reader(tmp_path / "consumers"):
                samples = scrape_until(collector.url, lambda s: value(s, "trackyard_log_head_seq") == 4)
                assert value(samples, "trackyard_consumer_lag_events", consumer="profiles") == 4
                assert value(samples, "trackyard_store_size_bytes") > 0
            assert not gauges_path(Settings(data_dir=tmp_path / "collector")).exists()
            assert gauges_path(Settings(data_dir=tmp_path / "consumers")).exists()
        finally:
            collector.stop()


def test_on_a_jetstream_log_the_served_node_reads_its_own_gauges(tmp_path: Path) -> None:
    """``serve`` (every role) on a JetStream log: its metrics consumer reads the stream's
    head and retention figures, and the scrape serves them."""
    with nats_servers(tmp_path / "nats") as jetstream:
        env = {**FAST_GAUGES, "TRACKYARD_LOG": f"{jetstream.url}?stream=GAUGES", "TRACKYARD_WAREHOUSE": "off"}
        server = start_server(tmp_path / "data", env=env)
        try:
            _track(server.url, server.write_key, 3)
            samples = scrape_until(
                server.url,
                lambda s: value(s, "trackyard_log_head_seq") == 3 and value(s, "trackyard_store_events") == 3,
            )
            assert value(samples, "trackyard_consumer_running", consumer="metrics") == 1
        finally:
            server.stop()


def _child_of(parent: int, consumer: str) -> int:
    """The pid of ``consumer``'s process under ``serve`` (``trackyard.consumers._child NAME``)."""
    # The supervisor's thread starts them: the children of every thread of ``serve``.
    tasks = Path(f"/proc/{parent}/task").glob("*/children")
    children = [pid for task in tasks for pid in task.read_text().split()]
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"trackyard.consumers._child" in argv and consumer.encode() in argv:
            return int(pid)
    raise AssertionError(f"no {consumer} process under {parent}")


def test_the_metrics_consumer_reads_the_running_loaders_position_without_duckdb(tmp_path: Path) -> None:
    """Its lag comes from the runner's mirror: the reader never loads DuckDB (nor pyarrow),
    which would take it from about 40 MB to over 110, nor opens the loader's file."""
    data = tmp_path / "data"
    server = start_server(data, env=FAST_GAUGES)
    try:
        assert server.process is not None
        _track(server.url, server.write_key, 3)
        caught_up = scrape_until(
            server.url,
            lambda s: (
                value(s, "trackyard_log_head_seq") == 3
                and value(s, "trackyard_consumer_lag_events", consumer="warehouse") == 0
            ),
        )
        assert value(caught_up, "trackyard_consumer_running", consumer="warehouse") == 1
        for consumer, loads in (("warehouse", True), ("metrics", False)):
            maps = Path(f"/proc/{_child_of(server.process.pid, consumer)}/maps").read_text()
            assert ("duckdb" in maps) is loads, consumer
    finally:
        server.stop()

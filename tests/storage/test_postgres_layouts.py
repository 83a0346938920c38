"""The layouts ``--state`` and ``--log`` compose: the log in a PostgreSQL database of its own."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from tests.pg_databases import fresh_database
from trackyard.config import Settings
from trackyard.errors import StoreUnavailable
from trackyard.storage.base import EventRecord, RejectRecord
from trackyard.storage.factory import describe_store, open_backends


def _event(message_id: str) -> EventRecord:
    body = b'{"type":"track","messageId":"%s"}' % message_id.encode()
    return EventRecord(1, message_id, "track", int(time.time() * 1000), body)


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
    assert row is not None
    return int(row[0])


def test_a_log_of_its_own_beside_a_postgresql_state(pg_dsn: str, tmp_path: Path) -> None:
    with fresh_database() as log_dsn:
        settings = Settings(data_dir=tmp_path, state_url=pg_dsn, log_url=log_dsn)
        assert "log: PostgreSQL at" in describe_store(settings)
        backends = open_backends(settings, writer=True)
        try:
            backends.sources.add_source("web")
            reject = RejectRecord(1, 0, "/v1/batch", "invalid", "bad", 0, b"{}")
            result = asyncio.run(backends.log.append([_event("a"), _event("a"), _event("b")], [reject]))
            assert (result.stored, result.duplicates) == (2, 1)
            assert [e.seq for e in backends.log.read_events()] == [1, 2]
            assert len(backends.rejects.read_rejects()) == 1
        finally:
            backends.close()
        # The events, their dedup keys and the rejects are in the log's database; the sources in the state's.
        assert (_count(log_dsn, "events"), _count(log_dsn, "dedup_keys"), _count(log_dsn, "rejects")) == (
            2,
            2,
            1,
        )
        assert (_count(pg_dsn, "events"), _count(pg_dsn, "sources"), _count(log_dsn, "sources")) == (0, 1, 0)


def test_a_postgresql_log_beside_the_embedded_sqlite_state(pg_dsn: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_url=pg_dsn)
    backends = open_backends(settings, writer=True)
    try:
        backends.sources.add_source("web")
        asyncio.run(backends.log.append([_event("a")], []))
        assert backends.log.head_seq() == 1
    finally:
        backends.close()
    assert (tmp_path / "trackyard.db").exists()  # the sources
    assert (_count(pg_dsn, "events"), _count(pg_dsn, "sources")) == (1, 0)


def test_a_lost_connection_is_a_503_for_that_commit_and_the_next_one_reconnects(
    pg_dsn: str, tmp_path: Path
) -> None:
    backends = open_backends(Settings(data_dir=tmp_path, state_url=pg_dsn), writer=True)
    try:
        asyncio.run(backends.log.append([_event("a")], []))
        # What a PostgreSQL restart or failover does to every session.
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreUnavailable):
            asyncio.run(backends.log.append([_event("b")], []))
        result = asyncio.run(backends.log.append([_event("b")], []))  # the client's retry
        assert (result.stored, result.duplicates) == (1, 0)
        assert [e.seq for e in backends.log.read_events()] == [1, 2]
    finally:
        backends.close()

"""The backend conformance suite: one set of tests that every backend must pass.

Each test here is written only against the protocols in :mod:`trackyard.storage.base`
and the profile store protocol, through the ``Backends`` the factory opens. A backend
joins the suite by adding its name to ``BACKENDS`` and a branch to ``_settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.pg_databases import fresh_database
from tests.storage.nats_servers import NatsServers, nats_servers
from trackyard.config import Settings
from trackyard.storage.base import AppendResult, EventRecord, RejectRecord
from trackyard.storage.factory import Backends, open_backends

#: The backends the suite runs against, each skipped when its server is not available.
#: ``postgresql``: the state and the log in PostgreSQL, a database of its own per test.
#: ``nats``: the log on a JetStream stream (R1, a server this session starts), the state in SQLite;
#: ``nats+postgresql``: that log with the state in PostgreSQL (stateless collector nodes).
BACKENDS = ["sqlite", "postgresql", "nats", "nats+postgresql"]

_streams = itertools.count(1)


@pytest.fixture(scope="session")
def jetstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServers]:
    with nats_servers(tmp_path_factory.mktemp("nats")) as servers:
        yield servers


@contextlib.contextmanager
def _settings(name: str, data_dir: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    if name == "sqlite":
        yield Settings(data_dir=data_dir)
    elif name == "postgresql":
        with fresh_database() as dsn:
            # Small partitions, so that the suite's logs of a few thousand events span several.
            yield Settings(data_dir=data_dir, state_url=dsn, log_partition_events=1000)
    elif name in ("nats", "nats+postgresql"):
        servers: NatsServers = request.getfixturevalue("jetstream")
        # A stream of its own per test: every test starts on an empty log.
        log_url = f"{servers.url}?stream=T{next(_streams)}"
        if name == "nats":
            yield Settings(data_dir=data_dir, log_url=log_url)
        else:
            with fresh_database() as dsn:
                yield Settings(data_dir=data_dir, state_url=dsn, log_url=log_url)
    else:
        raise AssertionError(f"no settings for backend {name!r}")


@contextlib.contextmanager
def reopened(backends: Backends, *, writer: bool = True) -> Iterator[Backends]:
    """Close ``backends`` and open the same store again, as a restarted process would."""
    backends.close()
    again = open_backends(backends.settings, writer=writer)
    try:
        yield again
    finally:
        again.close()


def event(message_id: str, source_id: int = 1, kind: str = "track") -> EventRecord:
    # Received now: dedup windows go by receipt time, and keys of long ago have expired.
    body = b'{"type":"%s","messageId":"%s"}' % (kind.encode(), message_id.encode())
    return EventRecord(source_id, message_id, kind, int(time.time() * 1000), body)


def append(
    backends: Backends, events: Sequence[EventRecord], rejects: Sequence[RejectRecord] = ()
) -> AppendResult:
    """``EventLog.append`` from synchronous test code: it returns once the write is durable."""
    return asyncio.run(backends.log.append(events, rejects))


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    """Open ``Backends`` (writer=True) on a fresh, empty store; closed after the test."""
    with _settings(request.param, tmp_path / "data", request) as settings:
        opened = open_backends(settings, writer=True)
        try:
            yield opened
        finally:
            opened.close()

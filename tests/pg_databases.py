"""A PostgreSQL database of its own per test, on the machine's server (127.0.0.1:5432, trust auth).

Each test creates a database and drops it afterwards. Without a server the tests skip, and
under CI they fail (``tests.conftest.require``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import require

PG_HOST = os.environ.get("TRACKYARD_TEST_PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("TRACKYARD_TEST_PGPORT", "5432")


def _admin_dsn() -> str | None:
    """A DSN that can create databases: user postgres, else root (whoever has trust auth)."""
    for user in ("postgres", "root"):
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"
        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except psycopg.Error:
            continue
        return dsn
    return None


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The DSN of a new, empty database, dropped (with its connections) on exit."""
    admin = _admin_dsn()
    require(admin is not None, f"no PostgreSQL server at {PG_HOST}:{PG_PORT}")
    assert admin is not None
    name = f"trackyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """The DSN of a fresh, empty PostgreSQL database, dropped after the test."""
    with fresh_database() as dsn:
        yield dsn

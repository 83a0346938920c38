"""Fixtures for the storage tests: a PostgreSQL database of its own per test."""

from tests.pg_databases import pg_dsn  # noqa: F401  (the fixture)

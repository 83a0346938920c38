"""Leases as PostgreSQL session advisory locks, each on a connection of its own.

Why advisory locks and not a lease table with expiry: a session lock is released by the
server the moment its session ends, and a process that dies (SIGKILL included) ends its
session as the kernel closes its socket, so another node takes over at its next try
(the supervisor retries every second) with no expiry to wait out and no clock to trust.
A node that vanishes from the network is noticed through TCP keepalives (about 13 s).
What a lease table would add, fencing tokens, the consumers do not need: the profile
store commits its cursor with its profiles, and every other consumer reads at least once.

A lease is two locks. The supervisor holds the *hold* lock (``acquire``) for as long as
it runs a consumer; the consumer's own process holds the *run* lock (``running``) while
it works, waiting for it first. When a supervisor dies, its child is told to stop and
finishes its batch; a new holder's child then waits for the old child's run lock, so two
instances never work at once, as with the SQLite backend's inherited ``flock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from trackyard.errors import StoreUnavailable
from trackyard.storage.postgres._db import connect, redact

log = logging.getLogger("trackyard.consumers")


def _key(name: str, role: str) -> int:
    digest = hashlib.blake2b(f"trackyard-lease\x00{role}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _session(url: str) -> psycopg.Connection[Any]:
    """A connection of the lease's own, with keepalives: a holder cut off from the network
    loses its lease after about idle + interval x count = 13 s."""
    with_keepalives = psycopg.conninfo.make_conninfo(
        url, keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=4
    )
    return connect(with_keepalives, redacted=redact(url))


class PGLease:
    def __init__(self, name: str, conn: psycopg.Connection[Any]) -> None:
        self._name = name
        self._conn: psycopg.Connection[Any] | None = conn

    @property
    def name(self) -> str:
        return self._name

    def fileno(self) -> int | None:
        return None  # the child holds its ``running`` lock instead of inheriting this one

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases its advisory locks
            self._conn = None


class PGLeases:
    """:class:`~trackyard.storage.base.LeaseProvider` over advisory locks in one database."""

    def __init__(self, url: str) -> None:
        self._url = url

    def acquire(self, name: str) -> PGLease | None:
        try:
            conn = _session(self._url)
        except StoreUnavailable as exc:
            # Not taken, as when another holds it: the supervisor tries again in a second.
            log.warning("lease %s not taken: %s", name, exc)
            return None
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_key(name, "hold"),)).fetchone()
        if not (row and row[0]):
            conn.close()
            return None
        return PGLease(name, conn)

    def held(self, name: str) -> bool:
        key = _key(name, "hold")
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
        # pg_locks shows a bigint key as its high and low 32 bits (classid, objid), objsubid 1.
        conn = connect(self._url)
        try:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = %s AND objid::bigint = %s",
                (unsigned >> 32, unsigned & 0xFFFF_FFFF),
            ).fetchone()
        finally:
            conn.close()
        return bool(row and row[0])

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        """Held by a consumer's process while it works; waits for an earlier one to be gone."""
        conn = _session(self._url)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_key(name, "run"),))
            yield
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"PGLeases({redact(self._url)})"

"""What every storage backend provides.

The HTTP layer only appends; consumers (the CLI today, profiles, warehouses and
destinations later) read the log from a cursor. SQLite (``storage/sqlite/``) is the one
backend today; later ones (PostgreSQL, NATS JetStream are planned) implement the same
protocols and are opened by ``storage/factory.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    name: str
    write_key: str
    enabled: bool
    #: Events per second this source may send; ``None`` means no limit.
    rate_limit: float | None
    created_at: str
    #: ``pbkdf2_sha256$iterations$salt$hash`` of the source secret (Bloomreach private auth).
    secret_hash: str | None = None

    def public(self) -> dict[str, Any]:
        """What an operator may see: everything but the secret's hash."""
        return {
            "id": self.id,
            "name": self.name,
            "write_key": self.write_key,
            "enabled": self.enabled,
            "rate_limit": self.rate_limit,
            "created_at": self.created_at,
        }


class EventRecord(NamedTuple):
    """One accepted event, already in canonical JSON.

    A named tuple, not a dataclass: one is built per event on the hot path, and its field
    order is the column order the store inserts it with.
    """

    source_id: int
    message_id: str
    type: str
    received_at_ms: int
    body: bytes


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """One refused event or request, kept with its reason so nothing vanishes silently."""

    source_id: int
    received_at_ms: int
    route: str
    code: str
    message: str
    #: Position in the batch, ``None`` for a single call.
    index: int | None
    body: bytes


class StoredEvent(NamedTuple):
    """One event as read back from the log. A named tuple: readers build one per event."""

    seq: int
    source_id: int
    type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredReject(RejectRecord):
    """A reject as read back, with its position in the rejects log."""

    seq: int = 0


@dataclass(frozen=True, slots=True)
class AppendResult:
    stored: int
    duplicates: int


class EventLog(Protocol):
    """The durable, ordered log of accepted events: collectors append, consumers read from a cursor."""

    async def append(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        """Durably write ``events`` (skipping messageIds already seen) and ``rejects``.

        Returns only once the write is as durable as the configured mode promises.
        Raises ``Overloaded`` when the writer's queue is full and ``StoreUnavailable``
        when the store cannot write.
        """
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store accepts writes right now."""
        ...

    def saturated(self) -> bool:
        """Whether appends would be refused as overloaded right now (checked before a body is read)."""
        ...

    def read_events(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        """Events with ``seq > after``, oldest first: the cursor consumers follow."""
        ...

    def head_seq(self) -> int:
        """The seq of the newest event in the log, 0 when it is empty."""
        ...

    def close(self) -> None: ...


class RejectStore(Protocol):
    """Refused events and requests, kept with their reasons (written by ``EventLog.append``)."""

    def read_rejects(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None
    ) -> list[StoredReject]: ...


class SourceRegistry(Protocol):
    """The sources: who may send, with which write key, secret and rate limit."""

    def sources(self) -> list[Source]: ...

    def source_by_name(self, name: str) -> Source | None: ...

    def sources_version(self) -> int:
        """A number that changes whenever a source is added or changed."""
        ...

    def add_source(
        self,
        name: str,
        write_key: str | None = None,
        rate_limit: float | None = None,
        secret: str | None = None,
    ) -> Source: ...

    def rotate_source(self, name: str, write_key: str | None = None) -> Source: ...

    def set_source_enabled(self, name: str, enabled: bool) -> Source: ...

    def set_source_secret(self, name: str, secret: str) -> Source: ...

    def set_source_rate_limit(self, name: str, rate_limit: float | None) -> Source: ...

    def remove_source(self, name: str) -> Source:
        """Delete the source (``KeyError`` if there is none) and return what it was.

        Its events and rejects stay, under its id, which no later source is given; a new
        source may take the name.
        """
        ...


class Store(EventLog, RejectStore, SourceRegistry, Protocol):
    """A backend that provides the log, the rejects and the sources together (SQLite does)."""

"""What every storage backend provides.

The HTTP layer only appends; consumers (the CLI today, profiles, warehouses and
destinations later) read the log from a cursor. A backend for PostgreSQL or NATS
JetStream implements the same protocol without touching the HTTP layer.
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


class Store(Protocol):
    """The interface the server and the consumers of the log use."""

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

    def read_events(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        """Events with ``seq > after``, oldest first: the cursor consumers follow."""
        ...

    def head_seq(self) -> int:
        """The seq of the newest event in the log, 0 when it is empty."""
        ...

    def read_rejects(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None
    ) -> list[StoredReject]: ...

    def sources(self) -> list[Source]: ...

    def sources_version(self) -> int:
        """A number that changes whenever a source is added or changed."""
        ...

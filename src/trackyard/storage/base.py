"""What every storage backend provides: small protocols, the records they take and give,
and the errors they raise.

The HTTP layer only appends; consumers (the CLI today, profiles, warehouses and
destinations) read the log from a cursor. SQLite (``storage/sqlite/``, the default) and
PostgreSQL (``storage/postgres/``) implement these protocols, and a NATS JetStream log is
planned; ``storage/factory.py`` opens them. Callers see only these names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class SourceExists(Exception):
    """A source with that name, or with that write key, exists already."""


class StoreURLError(ValueError):
    """``TRACKYARD_STORE`` names no backend that exists, or names one badly."""


class NoSuchSource(KeyError):
    """No source has that name. (A ``KeyError``, so lookups by name read naturally.)"""


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


#: The source id of a reject whose request named no source (a wrong key): source ids start at 1.
NO_SOURCE = 0


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
        when the store cannot write (also when it was opened without ``writer=True``).
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

    def stats(self) -> dict[str, int]:
        """This process's appends: ``commits``, ``written`` (new events), ``pending``, ``flushes``."""
        ...

    def head_seq(self) -> int:
        """The seq of the newest event in the log, 0 when it is empty."""
        ...

    def close(self) -> None: ...


class LogPart(NamedTuple):
    """The oldest part of the log that retention can drop whole (a SQLite block, a partition)."""

    first_seq: int
    last_seq: int
    #: When its newest event was received (epoch ms): the part is as old as that.
    newest_received_ms: int
    stored_bytes: int


class LogExtent(NamedTuple):
    """What the log holds now."""

    events: int
    #: Of which in compacted parts.
    compacted_events: int
    blocks: int
    #: The seq of the oldest event kept (0 when the log is empty) and when it was received.
    oldest_seq: int
    oldest_received_ms: int | None
    head_seq: int
    #: The canonical JSON of the events kept, and what the log takes to store them.
    json_bytes: int
    stored_bytes: int


class LogMaintenance(Protocol):
    """Compaction and retention of the log, run by the ``retention`` consumer and ``trackyard store``.

    Every step is one short transaction: a crash between two loses nothing and a restart
    resumes. What to drop is decided by ``trackyard.retention``; the backend only offers
    its oldest part and drops it when told.
    """

    def compact(self, force: bool = False, received_before_ms: int | None = None) -> int:
        """Compact the oldest cold events (one part); how many. ``force``: also a partial part,
        and of events received before ``received_before_ms`` only, when given."""
        ...

    def oldest_part(self) -> LogPart | None:
        """The oldest compacted part (only compacted parts are dropped), ``None`` if there is none."""
        ...

    def oldest_hot_received_ms(self) -> int | None:
        """When the oldest event not yet compacted was received."""
        ...

    def drop(self, part: LogPart) -> None: ...

    def prune_rejects(self, before_ms: int) -> int:
        """Delete the rejects received before ``before_ms``; how many."""
        ...

    def reclaim(self) -> int:
        """Give freed space back to the OS; the bytes returned."""
        ...

    def checkpoint(self) -> int:
        """Writes have paused: cut back what the backend keeps only for writing fast (SQLite:
        the write-ahead log); the bytes returned. Cheap when there is nothing to cut."""
        ...

    def returns_space(self) -> bool:
        """Whether :meth:`reclaim` can shrink the files (a SQLite store made before retention cannot)."""
        ...

    def vacuum(self) -> None:
        """Convert the store so that it can (a no-op where there is nothing to convert)."""
        ...

    def extent(self) -> LogExtent: ...

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk by part: ``log``, ``dedup``, ``rejects``, ``profiles``, ``warehouse``, ..."""
        ...

    def close(self) -> None: ...


def dedup_key(source_id: int, message_id: str) -> int:
    """The dedup key of an event: a signed 64-bit BLAKE2b hash of ``(source_id, message_id)``.

    The same in every process, run and backend (Python's ``hash()`` of a str is salted per
    process). Two messageIds share a key with a probability of about n / 2^64 for n ids in
    the window.
    """
    digest = hashlib.blake2b(f"{source_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class DedupIndex(Protocol):
    """The dedup keys (:func:`dedup_key`) of the events stored within the window.

    A log appends an event only if its key is not :meth:`seen`, then passes the keys of
    what it stored to :meth:`remember`. The SQLite log does both inside its write transaction, so the
    check and the insert are atomic (``storage/sqlite/_dedup.py``). A log that keeps ids
    only for minutes (NATS JetStream, ``storage/nats/``) is given the state's index: SQLite's
    (``storage/sqlite/dedup_index.py``) or PostgreSQL's (``storage/postgres/state.py``).
    """

    @property
    def window_seconds(self) -> int:
        """How long a key is remembered at least (``Settings.dedup_window_seconds``)."""
        ...

    def seen(self, keys: set[int]) -> set[int]:
        """The keys among ``keys`` that are already in the window."""
        ...

    def remember(self, received_at_ms: int, keys: Collection[int]) -> None:
        """The events with ``keys``, received at ``received_at_ms``, are stored durably now."""
        ...

    def remember_many(self, parts: Collection[tuple[int, Collection[int]]]) -> None:
        """Several :meth:`remember` calls (``(received_at_ms, keys)`` each) in one write."""
        ...


class RejectStore(Protocol):
    """Refused events and requests, kept with their reasons (written by ``EventLog.append``)."""

    def read_rejects(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None
    ) -> list[StoredReject]: ...


class SourceRegistry(Protocol):
    """The sources: who may send, with which write key, secret and rate limit."""

    def sources(self) -> list[Source]:
        """Every source, oldest first."""
        ...

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
    ) -> Source:
        """Create a source (with a generated write key unless given). Raises ``SourceExists``."""
        ...

    # Each change below raises ``NoSuchSource`` for an unknown name and moves ``sources_version``.

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


# -- consumers: cursors, leases, dead letters -------------------------------------------------


class CursorStore(Protocol):
    """Each consumer's position in the log: the seq of the last event it has handled."""

    def get(self, consumer: str) -> int:
        """The committed cursor, 0 for a consumer that never committed."""
        ...

    def commit(self, consumer: str, cursor: int) -> None:
        """Durably record ``cursor`` for ``consumer`` (it only ever moves as told, even backwards)."""
        ...

    def close(self) -> None: ...


class Lease(Protocol):
    """A held lease: while it is held, no other process holds the same name."""

    @property
    def name(self) -> str: ...

    def fileno(self) -> int | None:
        """A descriptor a child process may inherit to hold the lease with its parent, if any."""
        ...

    def release(self) -> None: ...


class LeaseProvider(Protocol):
    """Who runs a consumer: one holder per name at a time, freed when the holder dies."""

    def acquire(self, name: str) -> Lease | None:
        """Take the lease ``name`` if nobody holds it; never waits. ``None`` when it is held."""
        ...

    def held(self, name: str) -> bool:
        """Whether some process (this one included) holds ``name`` right now."""
        ...

    def running(self, name: str) -> AbstractContextManager[None]:
        """Entered by the consumer's own process around its work, under a lease its supervisor holds.

        Waits until no earlier instance of ``name`` still works (one whose supervisor died
        and that is finishing its batch). A no-op where the child inherits the lease itself
        (``Lease.fileno``).
        """
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer gave up on, kept with its reason (like a reject) so it can be replayed."""

    id: int
    consumer: str
    seq: int
    source_id: int
    type: str
    body: bytes
    reason: str
    attempts: int
    failed_at_ms: int


class DeadLetters(Protocol):
    """The events consumers could not handle, with why."""

    def add(self, consumer: str, event: StoredEvent, reason: str, attempts: int) -> None: ...

    def read(self, consumer: str | None = None, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters with ``id > after``, oldest first, of one consumer or all."""
        ...

    def count(self, consumer: str) -> int: ...

    def prune(self, before_ms: int) -> int:
        """Delete the dead letters that failed before ``before_ms`` (their own retention); how many."""
        ...

    def close(self) -> None: ...

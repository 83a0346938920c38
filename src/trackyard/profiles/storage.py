"""What a profile store provides: the builder's transaction and the readers' queries.

The SQLite backend (``storage/sqlite/profiles.py``, the default) and the PostgreSQL one
(``storage/postgres/profiles.py``) implement them; ``storage/factory.py`` opens them.
Nothing else in the package touches SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


@dataclass(slots=True)
class ProfileState:
    """One profile (a person or an account) as the builder holds it."""

    id: int
    #: ``p`` for a person, ``a`` for an account.
    kind: str
    created_seq: int
    #: Set once the profile was merged: the profile that holds it now.
    merged_into: int | None = None
    #: The profile's value of each unique id type.
    unique: dict[str, str] = field(default_factory=dict)
    #: Current traits: name -> ``[value, time in epoch µs, seq]``.
    traits: dict[str, list[Any]] = field(default_factory=dict)
    first_seen: int | None = None
    last_seen: int | None = None
    event_count: int = 0
    #: The row this was loaded from (``None`` for a new profile): a batch rewrites a
    #: profile's row only where it changed, so the store compares the two at commit.
    stored: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the builder has read the event log; committed with the profiles it built."""

    cursor: int = 0
    processed: int = 0
    next_id: int = 1


class Identity(NamedTuple):
    """An id and the profile holding it. The builder's records are named tuples: it makes
    one per id, trait write and merge, and they go to ``executemany`` as they are, their
    fields in column order."""

    key: str
    profile_id: int
    first_seen: int
    seq: int


class TraitWrite(NamedTuple):
    profile_id: int
    name: str
    ts: int
    seq: int
    value: bytes
    #: Whether it became the current value (an older write never overwrites a newer one).
    applied: bool


class MergeRecord(NamedTuple):
    seq: int
    at: int
    #: ``merge``: ``from_id`` joined ``into_id``; ``move``: the soft id ``via`` moved from
    #: ``from_id`` to ``into_id``.
    action: str
    into_id: int
    from_id: int
    via: str
    event_type: str


class Membership(NamedTuple):
    member_id: int
    account_id: int
    since: int
    seq: int


@dataclass(slots=True)
class Changes:
    """Everything one batch wrote besides merges and memberships, which apply at once."""

    progress: Progress
    identities: list[Identity] = field(default_factory=list)
    profiles: list[ProfileState] = field(default_factory=list)
    #: ``(profile_id, seq)``: the event at ``seq`` is about that profile.
    events: list[tuple[int, int]] = field(default_factory=list)
    history: list[TraitWrite] = field(default_factory=list)
    merges: list[MergeRecord] = field(default_factory=list)


class ProfileWriter(Protocol):
    """One builder's transactions. Only the process holding the consumer lock writes."""

    def begin(self) -> Progress:
        """Open a write transaction and return the progress committed so far."""
        ...

    def owners(self, keys: Collection[str]) -> dict[str, int]:
        """The profile currently holding each known id key."""
        ...

    def load(self, ids: Collection[int]) -> dict[int, ProfileState]: ...

    def repoint(self, loser: int, survivor: int) -> None:
        """Within the transaction: move everything of ``loser`` (ids, events, history,
        memberships, earlier merges into it) to ``survivor``."""
        ...

    def join(self, member: int, account: int, since: int, seq: int) -> None: ...

    def leave(self, member: int, account: int) -> bool: ...

    def commit(self, changes: Changes) -> None:
        """Write ``changes`` and the new progress, and commit: all of it or none."""
        ...

    def rollback(self) -> None: ...

    def reset(self) -> None:
        """Forget every profile and start again from the beginning of the log."""
        ...


class ProfileReader(Protocol):
    """The queries behind the HTTP API and the CLI."""

    def progress(self) -> Progress: ...

    def counts(self) -> dict[str, int]: ...

    def resolve_key(self, key: str) -> int | None: ...

    def survivor(self, profile_id: int) -> int | None:
        """The profile that holds ``profile_id`` now (itself unless it was merged)."""
        ...

    def profile(self, profile_id: int) -> ProfileState | None: ...

    def identities(self, profile_id: int) -> list[Identity]: ...

    def trait_history(self, profile_id: int, name: str | None = None) -> list[TraitWrite]: ...

    def event_seqs(self, profile_id: int, before: int | None, limit: int) -> list[int]:
        """Seqs of the profile's events, newest first, below ``before``."""
        ...

    def memberships(self, member_id: int) -> list[Membership]: ...

    def members(self, account_id: int) -> list[Membership]: ...

    def merges(self, profile_id: int) -> list[MergeRecord]: ...

    def request_rebuild(self) -> None:
        """Ask the running consumer to rebuild every profile from the start of the log."""
        ...

    def rebuild_requested(self) -> bool: ...

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]: ...

    def snapshot(self) -> dict[str, list[Any]]:
        """Everything the store holds, in sorted lists: two builds are equal when these are."""
        ...


class ProfileStore(ProfileWriter, ProfileReader, Protocol):
    """A backend: the builder's writer and the readers' queries over the same data."""

    def close(self) -> None: ...

"""The profile readers' queries, the same SQL in every backend that keeps profiles in tables.

Written with ``?`` placeholders; each backend's ``_all`` runs a query (PostgreSQL's turns
them into ``%s``). What differs between backends (the builder's transactions, how a set of
ids is bound) stays in each backend's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from trackyard.profiles.storage import Changes, Identity, Membership, MergeRecord, ProfileState, TraitWrite

#: The tables a rebuild empties, in the order a snapshot lists them.
TABLES = ("profiles", "identities", "profile_events", "trait_history", "memberships", "merges")
PROFILE_COLUMNS = "id, kind, merged_into, created_seq, first_seen, last_seen, event_count, uniq, traits"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
#: An empty object's encoding, for ``uniq`` and ``traits``.
_EMPTY = b"{}"


def profile_from_row(row: tuple[Any, ...]) -> ProfileState:
    """A ``profiles`` row (:data:`PROFILE_COLUMNS` order) as a :class:`ProfileState`."""
    return ProfileState(
        id=row[0],
        kind=row[1],
        merged_into=row[2],
        created_seq=row[3],
        first_seen=row[4],
        last_seen=row[5],
        event_count=row[6],
        unique=_decode(row[7]),
        traits=_decode(row[8]),
        stored=tuple(row),
    )


class ProfileRows(NamedTuple):
    """What a commit writes of its profiles, by statement (see :func:`profile_rows`)."""

    #: ``(id, kind, created_seq, first_seen, last_seen, event_count, uniq)`` of new profiles
    #: with no traits and no merge (a new visitor, the common case).
    fresh: list[tuple[Any, ...]]
    #: Whole rows, :data:`PROFILE_COLUMNS` order.
    whole: list[tuple[Any, ...]]
    #: ``(first_seen, last_seen, event_count, id)``.
    counters: list[tuple[Any, ...]]


def profile_rows(profiles: Sequence[ProfileState]) -> ProfileRows:
    """What to write of ``profiles``, each in as few bound parameters as it can.

    A profile whose row is as it was loaded is not written at all, and one where only its
    times and count changed (an event of a known person, the common case) is updated in
    those columns alone: a third of the bound parameters and no rewrite of its JSON. A new
    profile without traits leaves ``merged_into`` and ``traits`` to the statement (7
    parameters instead of 9: binding them is much of what a row costs).

    Each profile's ``stored`` becomes the row it is written as: what the store holds once
    the commit succeeds, so a builder that keeps the profile for its next batch writes only
    what that batch changes.
    """
    fresh: list[tuple[Any, ...]] = []
    whole: list[tuple[Any, ...]] = []
    counters: list[tuple[Any, ...]] = []
    for p in profiles:
        row = (
            p.id,
            p.kind,
            p.merged_into,
            p.created_seq,
            p.first_seen,
            p.last_seen,
            p.event_count,
            _encode(p.unique) if p.unique else _EMPTY,
            _encode(p.traits) if p.traits else _EMPTY,
        )
        stored = p.stored
        if stored is None:
            if p.merged_into is None and row[8] is _EMPTY:
                fresh.append(row[:2] + row[3:8])
            else:
                whole.append(row)
        elif row[:4] != stored[:4] or row[7] != stored[7] or row[8] != stored[8]:
            whole.append(row)
        elif row[4:7] != stored[4:7]:
            counters.append((row[4], row[5], row[6], row[0]))
        p.stored = row
    return ProfileRows(fresh, whole, counters)


_UPSERT_PROFILE = (
    " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, merged_into = excluded.merged_into,"
    " created_seq = excluded.created_seq, first_seen = excluded.first_seen,"
    " last_seen = excluded.last_seen, event_count = excluded.event_count,"
    " uniq = excluded.uniq, traits = excluded.traits"
)


def commit_statements(
    changes: Changes, meta_table: str, empty_blob: str
) -> list[tuple[str, Sequence[Sequence[Any]]]]:
    """What a builder's commit writes: each statement (``?`` placeholders) with its rows.

    ``empty_blob`` is the backend's literal for :data:`_EMPTY` (``{}`` as a blob)."""
    progress = changes.progress
    rows = profile_rows(changes.profiles)
    return [
        (
            "INSERT INTO identities (key, profile_id, first_seen, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET profile_id = excluded.profile_id",
            changes.identities,
        ),
        (
            "INSERT INTO profiles (id, kind, created_seq, first_seen, last_seen, event_count, uniq, traits)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, {empty_blob})" + _UPSERT_PROFILE,
            rows.fresh,
        ),
        (
            f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)" + _UPSERT_PROFILE,
            rows.whole,
        ),
        ("UPDATE profiles SET first_seen = ?, last_seen = ?, event_count = ? WHERE id = ?", rows.counters),
        ("INSERT INTO profile_events (profile_id, seq) VALUES (?, ?) ON CONFLICT DO NOTHING", changes.events),
        (
            "INSERT INTO trait_history (profile_id, name, ts, seq, value, applied) VALUES (?, ?, ?, ?, ?, ?)",
            changes.history,
        ),
        (
            "INSERT INTO merges (seq, at, action, into_id, from_id, via, event_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            changes.merges,
        ),
        (
            f"INSERT INTO {meta_table} (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [("cursor", progress.cursor), ("processed", progress.processed), ("next_id", progress.next_id)],
        ),
    ]


class ProfileQueries:
    """Mixed into a profile store: the :class:`~trackyard.profiles.storage.ProfileReader` queries,
    and the builder's statements that need no backend's own syntax."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _run(self, sql: str, params: Sequence[Any]) -> int:
        """Within the builder's transaction: run a statement, return its row count."""
        raise NotImplementedError

    def repoint(self, loser: int, survivor: int) -> None:
        pair = (survivor, loser)
        self._run("UPDATE identities SET profile_id = ? WHERE profile_id = ?", pair)
        self._run("UPDATE profile_events SET profile_id = ? WHERE profile_id = ?", pair)
        self._run("UPDATE trait_history SET profile_id = ? WHERE profile_id = ?", pair)
        self._run("UPDATE profiles SET merged_into = ? WHERE merged_into = ?", pair)
        for column, other in (("member_id", "account_id"), ("account_id", "member_id")):
            # A membership both held keeps the survivor's (older) row.
            self._run(
                f"UPDATE memberships SET {column} = ? WHERE {column} = ? AND NOT EXISTS (SELECT 1 FROM"
                f" memberships AS o WHERE o.{column} = ? AND o.{other} = memberships.{other})",
                (survivor, loser, survivor),
            )
            self._run(f"DELETE FROM memberships WHERE {column} = ?", (loser,))

    def join(self, member: int, account: int, since: int, seq: int) -> None:
        self._run(
            "INSERT INTO memberships (member_id, account_id, since, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (member, account, since, seq),
        )

    def leave(self, member: int, account: int) -> bool:
        return (
            self._run("DELETE FROM memberships WHERE member_id = ? AND account_id = ?", (member, account)) > 0
        )

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]:
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        (people, accounts, merged) = self._all(
            "SELECT count(*) FILTER (WHERE kind = 'p' AND merged_into IS NULL),"
            " count(*) FILTER (WHERE kind = 'a' AND merged_into IS NULL),"
            " count(*) FILTER (WHERE merged_into IS NOT NULL) FROM profiles"
        )[0]
        (merges,) = self._all("SELECT count(*) FROM merges WHERE action = 'merge'")[0]
        return {"people": people, "accounts": accounts, "merged": merged, "merges": merges}

    def resolve_key(self, key: str) -> int | None:
        rows = self._all("SELECT profile_id FROM identities WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else None

    def survivor(self, profile_id: int) -> int | None:
        rows = self._all("SELECT id, merged_into FROM profiles WHERE id = ?", (profile_id,))
        if not rows:
            return None
        return int(rows[0][1] if rows[0][1] is not None else rows[0][0])

    def profile(self, profile_id: int) -> ProfileState | None:
        return self.profiles([profile_id]).get(profile_id)

    def identities(self, profile_id: int) -> list[Identity]:
        rows = self._all(
            "SELECT key, profile_id, first_seen, seq FROM identities WHERE profile_id = ? ORDER BY seq, key",
            (profile_id,),
        )
        return [Identity(*row) for row in rows]

    def trait_history(self, profile_id: int, name: str | None = None) -> list[TraitWrite]:
        sql = "SELECT profile_id, name, ts, seq, value, applied FROM trait_history WHERE profile_id = ?"
        params: list[Any] = [profile_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._all(sql + " ORDER BY name, ts, seq", params)
        return [TraitWrite(r[0], r[1], r[2], r[3], bytes(r[4]), bool(r[5])) for r in rows]

    def event_seqs(self, profile_id: int, before: int | None, limit: int) -> list[int]:
        rows = self._all(
            "SELECT seq FROM profile_events WHERE profile_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (profile_id, before if before is not None else 2**63 - 1, limit),
        )
        return [row[0] for row in rows]

    def memberships(self, member_id: int) -> list[Membership]:
        return self._memberships("member_id", member_id)

    def members(self, account_id: int) -> list[Membership]:
        return self._memberships("account_id", account_id)

    def _memberships(self, column: str, profile_id: int) -> list[Membership]:
        rows = self._all(
            f"SELECT member_id, account_id, since, seq FROM memberships WHERE {column} = ? ORDER BY seq",
            (profile_id,),
        )
        return [Membership(*row) for row in rows]

    def merges(self, profile_id: int) -> list[MergeRecord]:
        rows = self._all(
            "SELECT seq, at, action, into_id, from_id, via, event_type FROM merges"
            " WHERE into_id IN (SELECT ? UNION SELECT id FROM profiles WHERE merged_into = ?)"
            " OR from_id IN (SELECT ? UNION SELECT id FROM profiles WHERE merged_into = ?) ORDER BY seq",
            (profile_id,) * 4,
        )
        return [MergeRecord(*row) for row in rows]

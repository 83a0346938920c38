"""Profiles and accounts as JSON: what the HTTP API answers and ``--json`` prints.

One place shapes them, so the API and the CLI always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from trackyard.event import format_timestamp
from trackyard.profiles.facts import (
    ACCOUNT,
    ACCOUNT_LOOKUP_TYPES,
    PERSON,
    TYPE_ALIASES,
    FactReader,
    split_key,
)
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import Membership, MergeRecord, ProfileReader, ProfileState
from trackyard.storage.base import EventLog

KIND_NAMES = {PERSON: "person", ACCOUNT: "account"}
_decode = msgspec.json.Decoder().decode


#: Where each interface shows the consumer's progress: a profile may exist but not be built yet.
_STATUS_HTTP = "GET /v1/profiles-status"
_STATUS_CLI = "trackyard profiles status"
#: Person id types every format yields; Bloomreach customer ids add their own names.
_PERSON_TYPES = ("user_id", "anonymous_id", "email")


class RefError(Exception):
    """A reference that names no profile (404) or is malformed (400).

    ``message`` is the HTTP API's wording and ``cli_message`` the command line's: they
    differ only in where they send the reader (an endpoint or a command).
    """

    def __init__(self, status: int, code: str, message: str, *, not_built_hint: bool = False) -> None:
        hint = " The profile may also not be built yet (see {})." if not_built_hint else ""
        self.status = status
        self.code = code
        self.message = message + hint.format(_STATUS_HTTP)
        self.cli_message = message + hint.format(_STATUS_CLI)
        super().__init__(self.message)


def _listed(types: tuple[str, ...] | list[str]) -> str:
    return ", ".join(types)


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_timestamp(micros)


def _identity(key: str) -> dict[str, str]:
    _, id_type, value = split_key(key)
    return {"type": id_type, "value": value}


@dataclass
class ProfileViews:
    log: EventLog
    profiles: ProfileReader
    settings: ProfileSettings

    def find(self, kind: str, ref: str) -> int:
        """The current profile of ``kind`` that ``ref`` (``type:value`` or ``id:N``) names.

        Accounts may also be named by a bare id, tried as each account id type in turn.
        Raises :class:`RefError`.
        """
        noun = KIND_NAMES[kind]
        id_type, sep, value = ref.partition(":")
        candidates: list[tuple[str, str]] = [(id_type, value)] if sep else []
        if kind == ACCOUNT and not (sep and id_type in (*ACCOUNT_LOOKUP_TYPES, "id")):
            candidates += [(t, ref) for t in ACCOUNT_LOOKUP_TYPES]
        if not candidates:
            raise RefError(
                400,
                f"invalid_{noun}_ref",
                f"Name a {noun} as TYPE:VALUE, e.g. email:ann@example.com, user_id:u-1 or id:12 "
                f"(got {ref!r}).",
            )
        reader = FactReader(self.settings)
        for tried_type, tried_value in candidates:
            found: int | None = None
            if tried_type == "id":
                found = self.profiles.survivor(int(tried_value)) if tried_value.isdigit() else None
            elif (key := reader.key(kind, TYPE_ALIASES.get(tried_type, tried_type), tried_value)) is not None:
                found = self.profiles.resolve_key(key)
            if (
                found is not None
                and (state := self.profiles.profile(found)) is not None
                and state.kind == kind
            ):
                return found
        raise self._not_found(kind, ref, id_type if sep else None)

    def _person_types(self) -> list[str]:
        """The person id types this configuration names (any Bloomreach customer id type too)."""
        configured = (*_PERSON_TYPES, *self.settings.priority, *self.settings.unique_id_types)
        return list(dict.fromkeys(t for t in configured if t not in ACCOUNT_LOOKUP_TYPES))

    def _not_found(self, kind: str, ref: str, id_type: str | None) -> RefError:
        noun = KIND_NAMES[kind]
        if kind == PERSON:
            known = [*self._person_types(), "id"]
            listed = f"{_listed(known)}, or any Bloomreach customer id type (cookie, ...)"
        else:
            known = [*ACCOUNT_LOOKUP_TYPES, "id"]
            listed = _listed(known)
        id_type = None if id_type is None else TYPE_ALIASES.get(id_type, id_type)
        if kind == PERSON and id_type in ACCOUNT_LOOKUP_TYPES:
            message = f"No person has the id {ref!r}: {id_type} names accounts, not people."
        elif kind == ACCOUNT and id_type in self._person_types():
            message = f"No account has the id {ref!r}: {id_type} names people, not accounts."
        elif kind == ACCOUNT and id_type not in known:
            message = (
                f"No account has the id {ref!r} (tried as {_listed(ACCOUNT_LOOKUP_TYPES)}). "
                f"Account ids are TYPE:VALUE with TYPE one of {listed}, or a bare id."
            )
        elif kind == PERSON and id_type not in known:
            message = (
                f"No person has the id {ref!r}, and {id_type!r} is not one of the usual person id "
                f"types: {listed}."
            )
        else:
            message = f"No {noun} has the id {ref!r}. {noun.capitalize()} id types are {listed}."
        return RefError(404, f"{noun}_not_found", message, not_built_hint=True)

    def _state(self, pid: int) -> ProfileState:
        state = self.profiles.profile(pid)
        assert state is not None
        return state

    def summary(self, pid: int) -> dict[str, Any]:
        state = self._state(pid)
        body: dict[str, Any] = {
            "id": state.id,
            "kind": KIND_NAMES[state.kind],
            "identities": [_identity(i.key) for i in self.profiles.identities(pid)],
            "traits": {name: value for name, (value, _, _) in sorted(state.traits.items())},
            "first_seen": _time(state.first_seen),
            "last_seen": _time(state.last_seen),
            "event_count": state.event_count,
        }
        if state.kind == PERSON:
            body["accounts"] = self.accounts(pid)
        else:
            body["parents"] = self.accounts(pid)
            body["member_count"] = len(self.profiles.members(pid))
        body["merges"] = self.merges(pid)
        return body

    def identities(self, pid: int) -> list[dict[str, Any]]:
        return [
            {**_identity(i.key), "first_seen": _time(i.first_seen), "seq": i.seq}
            for i in self.profiles.identities(pid)
        ]

    def traits(self, pid: int, history: bool = False) -> dict[str, Any]:
        state = self._state(pid)
        body: dict[str, Any] = {
            "traits": {
                name: {"value": value, "updated_at": _time(ts), "seq": seq}
                for name, (value, ts, seq) in sorted(state.traits.items())
            }
        }
        if history:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for write in self.profiles.trait_history(pid):
                grouped.setdefault(write.name, []).append(
                    {
                        "value": _decode(write.value),
                        "at": _time(write.ts),
                        "seq": write.seq,
                        "applied": write.applied,
                    }
                )
            body["history"] = grouped
        return body

    def _brief(self, pid: int, membership: Membership) -> dict[str, Any]:
        state = self._state(pid)
        return {
            "id": pid,
            "kind": KIND_NAMES[state.kind],
            "identities": [_identity(i.key) for i in self.profiles.identities(pid)],
            "name": state.traits.get("name", [None])[0],
            "since": _time(membership.since),
            "seq": membership.seq,
        }

    def accounts(self, pid: int) -> list[dict[str, Any]]:
        return [self._brief(m.account_id, m) for m in self.profiles.memberships(pid)]

    def members(self, pid: int) -> list[dict[str, Any]]:
        return [self._brief(m.member_id, m) for m in self.profiles.members(pid)]

    def merges(self, pid: int) -> list[dict[str, Any]]:
        return [_merge(m) for m in self.profiles.merges(pid)]

    def events(self, pid: int, before: int | None, limit: int) -> dict[str, Any]:
        """The profile's events, newest first, read back from the log; ``next`` pages on."""
        seqs = self.profiles.event_seqs(pid, before, limit)
        events = []
        for seq in seqs:
            page = self.log.read_events(after=seq - 1, limit=1)
            if page and page[0].seq == seq:
                events.append({"seq": seq, "event": _decode(page[0].body)})
        return {"events": events, "next": seqs[-1] if len(seqs) == limit else None}


def _merge(record: MergeRecord) -> dict[str, Any]:
    return {
        "action": record.action,
        "into": record.into_id,
        "from": record.from_id,
        "via": _identity(record.via),
        "event_type": record.event_type,
        "seq": record.seq,
        "at": _time(record.at),
    }

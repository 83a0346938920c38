"""What one canonical event says about people and accounts: its ids, traits and links.

This is the only module that knows how each vendor's message lands in the canonical event
(docs/formats/): every rule that reads ``context.externalIds``, ``context.vitally`` or
``context.bloomreach`` is here, and the profile builder sees only :class:`Facts`.

Ids are *keys*: ``kind``, ``id type`` and ``value`` joined by an ASCII unit separator,
``p`` for people and ``a`` for accounts, so the two never collide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from trackyard.event import parse_timestamp, seconds_to_micros
from trackyard.profiles.settings import ProfileSettings

SEP = "\x1f"
PERSON = "p"
ACCOUNT = "a"

#: Canonical field names accepted as id types in lookups, besides the stored names.
TYPE_ALIASES = {"userId": "user_id", "anonymousId": "anonymous_id", "groupId": "group_id"}
#: Account id types a plain account id (``/v1/accounts/acme``) is looked up by, in order.
ACCOUNT_LOOKUP_TYPES = (
    "group_id",
    "vitally_account_id",
    "vitally_organization_id",
    "koala_account_id",
    "domain",
)
#: The account id types an unlink (``traits.company = {id, remove: true}``) may name.
UNLINK_TYPES = ("vitally_account_id", "group_id")
#: A letter or digit: ``str.isalnum()``, which ``\w`` is plus the underscore.
_ALNUM = re.compile(r"[^\W_]")
#: Calls that only say who did something: no traits, no links (unless they name accounts).
_PLAIN_TYPES = frozenset({"track", "page", "screen"})
_GROUP_SUBJECT_TYPES = {"account": "vitally_account_id", "organization": "vitally_organization_id"}


class ContextView(msgspec.Struct):
    """The parts of an event's ``context`` that say something about people and accounts."""

    externalIds: Any = None
    groupId: Any = None
    vitally: Any = None
    bloomreach: Any = None


class SourceView(msgspec.Struct):
    format: Any = None


class EventView(msgspec.Struct):
    """The fields of a canonical event that profiles read; the rest is never decoded.

    Decoding straight into this skips ``properties``, most of ``context`` and every other
    field the rules never look at, and reads by attribute instead of by key.
    """

    type: Any = None
    event: Any = None
    name: Any = None
    userId: Any = None
    anonymousId: Any = None
    previousId: Any = None
    groupId: Any = None
    traits: Any = None
    timestamp: Any = None
    receivedAt: Any = None
    context: ContextView = msgspec.field(default_factory=ContextView)
    source: SourceView = msgspec.field(default_factory=SourceView)


_decode_view = msgspec.json.Decoder(EventView).decode
_decode_any = msgspec.json.Decoder().decode
_PLAIN_FIELDS = tuple(name for name in EventView.__struct_fields__ if name not in ("context", "source"))
_CONTEXT_FIELDS = ContextView.__struct_fields__


def decode_event(body: bytes) -> EventView | None:
    """The profile-relevant view of a stored event; ``None`` if it is not a JSON object.

    The log holds canonical events, so the typed decode nearly always succeeds; an event
    whose ``context`` or ``source`` is not an object (only hand-made stores have them) is
    read field by field instead, with those parts taken as empty.
    """
    try:
        return _decode_view(body)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        return None
    event = _decode_any(body)
    if not isinstance(event, dict):
        return None
    context, source = _dict(event.get("context")), _dict(event.get("source"))
    return EventView(
        **{name: event.get(name) for name in _PLAIN_FIELDS},
        context=ContextView(**{name: context.get(name) for name in _CONTEXT_FIELDS}),
        source=SourceView(format=source.get("format")),
    )


def make_key(kind: str, id_type: str, value: str) -> str:
    return f"{kind}{SEP}{id_type}{SEP}{value}"


def split_key(key: str) -> tuple[str, str, str]:
    kind, id_type, value = key.split(SEP, 2)
    return kind, id_type, value


@dataclass(slots=True)
class Facts:
    """The profile-relevant content of one event, in the order the builder applies it.

    Empty parts default to ``()``, not to new lists: one is built per event.
    """

    seq: int
    ts: int
    type: str
    name: str | None
    #: The person's id keys, most decisive first (``priority``).
    person: Sequence[str] = ()
    #: An alias call's ``previousId``: a user_id or an anonymous_id, whichever is known.
    previous: str | None = None
    traits: dict[str, Any] | None = None
    trait_ts: int = 0
    #: A group call's account (its keys), with its traits.
    subject: Sequence[str] = ()
    subject_traits: dict[str, Any] | None = None
    #: Other accounts the event names, each as its list of keys.
    refs: Sequence[Sequence[str]] = ()
    #: An identify joins the person to ``refs``; a group call the person to ``subject``
    #: and ``subject`` to ``refs`` (an account inside an organization).
    join: bool = False
    #: Keys of accounts the person leaves (Vitally unlink, ``traits.company.remove``).
    unlink: Sequence[str] = ()

    def keys(self) -> set[str]:
        found = {*self.person, *self.subject, *self.unlink}
        for ref in self.refs:
            found.update(ref)
        if self.previous is not None:
            found.add(make_key(PERSON, "user_id", self.previous))
            found.add(make_key(PERSON, "anonymous_id", self.previous))
        return found


class FactReader:
    """Turns canonical events into :class:`Facts` under the configured id rules."""

    def __init__(self, settings: ProfileSettings) -> None:
        self.settings = settings
        # Listed types first, then the other unique types, then the rest alphabetically:
        # a unique id always decides before a soft one.
        ordered = [*settings.priority, *(t for t in settings.unique_id_types if t not in settings.priority)]
        self._rank = {t: i for i, t in enumerate(ordered)}

    def clean(self, id_type: str, value: Any) -> str | None:
        """The value to match on, or ``None`` for a junk value (blocked, no letter or digit)."""
        if not isinstance(value, str):
            return None
        stripped = value.strip()
        if not stripped or stripped.lower() in self.settings.blocked_values:
            return None
        if self.settings.require_alphanumeric and _ALNUM.search(value) is None:
            return None
        return stripped.lower() if id_type in self.settings.lowercase_id_types else value

    def key(self, kind: str, id_type: str, value: Any) -> str | None:
        id_type = TYPE_ALIASES.get(id_type, id_type)
        cleaned = self.clean(id_type, value)
        return None if cleaned is None else make_key(kind, id_type, cleaned)

    def sort_keys(self, keys: set[str]) -> list[str]:
        if len(keys) < 2:
            return list(keys)

        def rank(key: str) -> tuple[int, str]:
            _, id_type, _ = split_key(key)
            return self._rank.get(id_type, len(self._rank)), key

        return sorted(keys, key=rank)

    def read(self, seq: int, event: EventView) -> Facts:
        """The facts of ``event``; a track, page or screen that names no account takes a
        shorter path (most of the log: a third of the reference path's time), checked
        against :meth:`read_reference` by a differential property test."""
        kind = event.type
        context = event.context
        if kind in _PLAIN_TYPES and context.externalIds is None and context.groupId is None:
            return self._read_plain(seq, kind, event)
        return self.read_reference(seq, event)

    def _read_plain(self, seq: int, kind: str, event: EventView) -> Facts:
        """:meth:`read_reference` for an event whose only ids are ``userId`` and ``anonymousId``."""
        name = event.event if kind == "track" else event.name
        ts = _micros(event)
        anonymous = self.key(PERSON, "anonymous_id", event.anonymousId)
        # Koala's userId is its email, and a Koala event names it in externalIds.
        user = None if event.source.format == "koala" else self.key(PERSON, "user_id", event.userId)
        if user is None:
            person = [] if anonymous is None else [anonymous]
        else:
            person = [user] if anonymous is None else self.sort_keys({user, anonymous})
        return Facts(
            seq=seq,
            ts=ts,
            type=kind,
            name=name if isinstance(name, str) else None,
            person=person,
            trait_ts=ts,
        )

    def read_reference(self, seq: int, event: EventView) -> Facts:
        """The facts of any event: every rule, in full."""
        kind = event.type
        context = event.context
        source_format = event.source.format
        vitally_type = _dict(context.vitally).get("type")
        name = event.event if kind == "track" else event.name
        facts = Facts(
            seq=seq, ts=_micros(event), type=str(kind), name=name if isinstance(name, str) else None
        )
        facts.trait_ts = facts.ts
        traits = _dict(event.traits)
        person: set[str] = set()
        if source_format != "koala":  # Koala's userId is its email, an email id below
            self._add(person, PERSON, "user_id", event.userId)
        self._add(person, PERSON, "anonymous_id", event.anonymousId)
        accounts: dict[str, set[str]] = {}
        if isinstance(context.externalIds, list):
            self._external_ids(context.externalIds, person, accounts)
        if kind == "identify":
            for id_type in self.settings.trait_id_types:
                self._add(person, PERSON, id_type, traits.get(id_type))
            company = traits.get("company")
            if vitally_type == "unlink" or (isinstance(company, dict) and company.get("remove") is True):
                if isinstance(company, dict):
                    facts.unlink = [
                        k for t in UNLINK_TYPES if (k := self.key(ACCOUNT, t, company.get("id"))) is not None
                    ]
                traits = {k: v for k, v in traits.items() if k != "company"}
                if vitally_type == "unlink":
                    traits = {}
            facts.traits = traits or None
            facts.trait_ts = _update_time(context, facts.ts)
            facts.join = True
        elif kind == "alias":
            previous = event.previousId
            if isinstance(previous, str) and self.clean("user_id", previous) is not None:
                facts.previous = previous
        elif kind == "group" and vitally_type != "customobjectinstance":
            self._group(facts, event, accounts, vitally_type, source_format)
        facts.person = self.sort_keys(person)
        group_id = context.groupId
        if (ref := self.key(ACCOUNT, "group_id", group_id)) is not None and not any(
            split_key(k)[2] == group_id for keys in accounts.values() for k in keys
        ):
            accounts.setdefault("group", set()).add(ref)
        if accounts:
            facts.refs = [self.sort_keys(keys) for _, keys in sorted(accounts.items()) if keys]
        return facts

    def _external_ids(self, external_ids: list[Any], person: set[str], accounts: dict[str, set[str]]) -> None:
        for ext in external_ids:
            if not isinstance(ext, dict):
                continue
            collection = ext.get("collection", "users")
            id_type = ext.get("type")
            if not isinstance(id_type, str) or not isinstance(collection, str):
                continue
            if collection == "users":
                self._add(person, PERSON, id_type, ext.get("id"))
            elif collection in ("accounts", "organizations"):
                self._add(accounts.setdefault(collection, set()), ACCOUNT, id_type, ext.get("id"))

    def _group(
        self,
        facts: Facts,
        event: EventView,
        accounts: dict[str, set[str]],
        vitally_type: object,
        source_format: object,
    ) -> None:
        group_id = event.groupId
        subject: set[str] = set()
        if source_format == "koala":
            # Koala's groupId is its account_id or domain; both are in the account's external ids.
            subject = accounts.pop("accounts", set())
        elif (
            key := self.key(ACCOUNT, _GROUP_SUBJECT_TYPES.get(str(vitally_type), "group_id"), group_id)
        ) is not None:
            subject.add(key)
        facts.subject = self.sort_keys(subject)
        facts.subject_traits = _dict(event.traits) or None
        facts.join = True

    def _add(self, into: set[str], kind: str, id_type: str, value: Any) -> None:
        if (key := self.key(kind, id_type, value)) is not None:
            into.add(key)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _micros(event: EventView) -> int:
    for value in (event.timestamp, event.receivedAt):
        try:
            return parse_timestamp(value)
        except (ValueError, TypeError):
            continue
    return 0


def _update_time(context: ContextView, default: int) -> int:
    """Bloomreach's ``update_timestamp``, the time trait values are compared by."""
    data = _dict(_dict(context.bloomreach).get("data"))
    if data.get("update_timestamp") is None:
        return default
    try:
        return seconds_to_micros(data["update_timestamp"], "update_timestamp")
    except Exception:
        return default

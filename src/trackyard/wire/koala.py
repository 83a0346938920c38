"""Koala's server-side batch format: decode a request into canonical events, encode them back.

Sources: ``shared/reference/vendors.md`` section 1 and the seed JSON Schema
(``koala-profile-batch-request.schema.json``); the choices on what the record leaves open
are in ``docs/formats/koala.md``.

A Koala request is one person (``/batch``) or one account (``/accounts/batch``) plus
lists of entries. Each entry becomes one canonical event; a request with no entries
becomes one ``identify`` (person) or ``group`` (account) event, so that an accepted request
always leaves a trace. Every field without a Segment Spec home is kept verbatim under
``context.koala``, which is what makes :func:`encode` the exact inverse of :func:`decode`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec

from trackyard.errors import CallError, IngestError
from trackyard.event import format_timestamp, parse_timestamp
from trackyard.wire._json import DECODE_ERRORS, json_type
from trackyard.wire.base import Decoded, Format, Normalized, Receipt, canonical

FORMAT: Final = "koala"
PROFILE_ROUTE: Final = "/web/projects/{key}/batch"
ACCOUNT_ROUTE: Final = "/web/projects/{key}/accounts/batch"
#: Koala's documented cap, per list, on ``/batch``; ``/accounts/batch`` documents none.
MAX_PROFILE_ENTRIES: Final = 30

Level = Literal["profile", "account"]

#: Per level: the lists a request may carry -> (the entry's Koala ``type``, canonical type).
LISTS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "profile": {
        "events": ("track", "track"),
        "identifies": ("identify", "identify"),
        "page_views": ("page", "page"),
    },
    "account": {"events": ("track", "track"), "identifies": ("identify", "group")},
}

#: Per Koala entry type: the entry fields that have a Spec home -> (canonical field, JSON type).
#: ``sent_at`` and ``message_id`` are handled apart (timestamp parsing, dedup key).
_ENTRY_FIELDS: Final[dict[str, dict[str, tuple[str, type]]]] = {
    "track": {"event": ("event", str), "properties": ("properties", dict)},
    "identify": {"traits": ("traits", dict)},
    "page": {"name": ("name", str), "properties": ("properties", dict)},
}

_IDENTITY_KEYS: Final = {"profile": ("profile_id", "email"), "account": ("account_id", "domain")}
#: ``context.externalIds`` entries: Koala field -> (type, collection).
_EXTERNAL_IDS: Final = {
    "email": ("email", "users"),
    "account_id": ("koala_account_id", "accounts"),
    "domain": ("domain", "accounts"),
}
_EXTERNAL_FIELD: Final = {id_type: field for field, (id_type, _) in _EXTERNAL_IDS.items()}

T = TypeVar("T")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
#: Keys of a request's head, the same whatever the order of its keys.
_sorted_encoder = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every event of one request carries: its level, identities and leftovers."""

    level: Level
    identity: dict[str, str]
    context: dict[str, Any]
    leftovers: dict[str, Any]
    #: The whole request, which entries are checked against (one person per request).
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KoalaRequest:
    """One request to Koala: which API it goes to and its JSON body."""

    level: Level
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return "/batch" if self.level == "profile" else "/accounts/batch"


# -- decode ------------------------------------------------------------------------------------


def decode(body: bytes, level: Level, receipt: Receipt) -> list[tuple[str, str, dict[str, Any]]]:
    """Validate a whole request and turn it into ``(messageId, type, canonical event)`` triples.

    Koala validates a request as one JSON document, so any problem refuses all of it:
    raises ``CallError`` naming the first offending field.
    """
    return [_normalize(entry, receipt) for entry in _entries_of(body, level)]


#: One entry of a request: what the request shares, its list, its index there, the entry
#: (``None, None, None`` stands for a request with no entries).
_Entry = tuple[_Shared, str | None, int | None, Any]


def _entries_of(body: bytes, level: Level) -> list[_Entry]:
    """The request's entries, once the request as a whole is valid; raises ``CallError``."""
    try:
        request = _decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise CallError("invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(request, dict):
        raise CallError("invalid_request", f"The body must be a JSON object, not {json_type(request)}.")

    leftovers = dict(request)
    identity, context = _request_identity(leftovers, level)
    lists = LISTS[level]
    entries: list[tuple[str, int, Any]] = []
    for list_name in lists:
        value = leftovers.get(list_name)
        if value is None or value == []:
            continue  # null and [] carry nothing: they stay in the leftovers, verbatim
        if not isinstance(value, list):
            raise CallError("invalid_type", f"{list_name} must be an array, not {json_type(value)}.")
        if level == "profile" and len(value) > MAX_PROFILE_ENTRIES:
            raise CallError(
                "too_many_entries",
                f"{list_name} has {len(value)} entries; Koala accepts at most {MAX_PROFILE_ENTRIES} per "
                "request. Split them into several requests for the same person.",
            )
        del leftovers[list_name]
        entries += [(list_name, index, entry) for index, entry in enumerate(value)]

    shared = _Shared(level, identity, context, leftovers, request)
    if not entries:
        return [(shared, None, None, None)]
    return [(shared, list_name, index, entry) for list_name, index, entry in entries]


def _normalize(entry: _Entry, receipt: Receipt) -> tuple[str, str, dict[str, Any]]:
    shared, list_name, index, value = entry
    if list_name is None or index is None:
        return _event("identify" if shared.level == "profile" else "group", {}, shared, None, {}, receipt)
    return _entry_event(list_name, index, value, LISTS[shared.level][list_name], shared, receipt)


class KoalaBatch(Format[_Entry]):
    """``/batch`` (one person) or ``/accounts/batch`` (one account): all or nothing, as Koala."""

    name = FORMAT

    def __init__(self, level: Level) -> None:
        self.level = level

    def decode(self, body: bytes) -> Decoded:
        if not body:
            # An empty POST is a key check: the first Segment Koala destination tested its
            # credentials this way (vendors.md 1.1). It counts as one event.
            return Decoded((), cost=1)
        try:
            return Decoded(_entries_of(body, self.level))
        except CallError as error:
            raise IngestError(error.code, error.message) from None

    def normalize(self, item: _Entry, receipt: Receipt) -> Normalized:
        message_id, kind, event = _normalize(item, receipt)
        return message_id, kind, _encoder.encode(event)


def _request_identity(leftovers: dict[str, Any], level: Level) -> tuple[dict[str, str], dict[str, Any]]:
    """Move the request's identities (and ``ip``) out of ``leftovers``: returns the canonical
    top-level ids (``anonymousId``/``userId`` or ``groupId``) and the shared context."""
    first, second = _IDENTITY_KEYS[level]
    found: dict[str, str] = {}
    for key in (first, second):
        value = leftovers.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise CallError("invalid_type", f"{key} must be a string, not {json_type(value)}.")
        found[key] = leftovers.pop(key)
    if not found:
        raise CallError("missing_identity", f"Missing required field: {second} or {first}.")

    context: dict[str, Any] = {}
    ip = leftovers.get("ip")
    if isinstance(ip, str):
        context["ip"] = leftovers.pop("ip")
    external_ids = [
        {"id": value, "type": _EXTERNAL_IDS[key][0], "collection": _EXTERNAL_IDS[key][1], "encoding": "none"}
        for key, value in found.items()
        if key in _EXTERNAL_IDS
    ]
    if external_ids:
        context["externalIds"] = external_ids
    if level == "account":
        return {"groupId": found.get("account_id") or found["domain"]}, context
    identity = {"anonymousId": found.get("profile_id"), "userId": found.get("email")}
    return {key: value for key, value in identity.items() if value is not None}, context


def _entry_event(
    list_name: str, index: int, entry: Any, types: tuple[str, str], shared: _Shared, receipt: Receipt
) -> tuple[str, str, dict[str, Any]]:
    where = f"{list_name}[{index}]"
    if not isinstance(entry, dict):
        raise CallError("invalid_type", f"{where} must be an object, not {json_type(entry)}.")
    koala_type, kind = types
    if entry.get("type") != koala_type:
        raise CallError("invalid_type", f'{where}.type must be "{koala_type}", not {entry.get("type")!r}.')
    if shared.level == "profile":
        _check_same_person(entry, shared.request, where)
    leftovers = dict(entry)
    del leftovers["type"]
    mapped: dict[str, Any] = {}
    for key, (field, expected_type) in _ENTRY_FIELDS[koala_type].items():
        value = leftovers.get(key)
        if value is None:
            continue  # absent, or null: a null stays in the leftovers, verbatim
        if not isinstance(value, expected_type):
            expected = "a string" if expected_type is str else "an object"
            raise CallError("invalid_type", f"{where}.{key} must be {expected}, not {json_type(value)}.")
        mapped[field] = leftovers.pop(key)
    if kind == "track" and not mapped.get("event"):
        raise CallError("missing_event", f"{where} needs an event name in 'event'.")

    sent_at = leftovers.get("sent_at")
    if sent_at is not None:
        if not isinstance(sent_at, str):
            raise CallError(
                "invalid_timestamp", f"{where}.sent_at must be a string, not {json_type(sent_at)}."
            )
        try:
            timestamp = format_timestamp(parse_timestamp(sent_at))
        except (ValueError, TypeError, OverflowError, OSError):
            raise CallError(
                "invalid_timestamp",
                f"{where}.sent_at must be an ISO-8601 date-time, such as 2022-11-09T23:57:14.776Z; "
                f"got {sent_at!r}.",
            ) from None
        mapped["originalTimestamp"] = leftovers.pop("sent_at")
        mapped["timestamp"] = timestamp

    message_id = leftovers.get("message_id")
    if message_id is not None and message_id != "":
        if not isinstance(message_id, str):
            raise CallError(
                "invalid_type", f"{where}.message_id must be a string, not {json_type(message_id)}."
            )
        mapped["messageId"] = leftovers.pop("message_id")
    return _event(kind, mapped, shared, list_name, leftovers, receipt)


def _check_same_person(entry: dict[str, Any], person: dict[str, Any], where: str) -> None:
    """All entries of a ``/batch`` request are one person (vendors.md 1.3): an entry that
    names another email or profile_id than the request's is refused, not silently merged."""
    for key in ("email", "profile_id"):
        own, theirs = entry.get(key), person.get(key)
        if isinstance(own, str) and isinstance(theirs, str) and own and theirs and own != theirs:
            raise CallError(
                "different_person",
                f"{where}.{key} is {own!r} but the request's {key} is {theirs!r}; all entries of one "
                "request must belong to the same person. Send each person in its own request.",
            )


def _event(
    kind: str,
    mapped: dict[str, Any],
    shared: _Shared,
    list_name: str | None,
    entry_leftovers: dict[str, Any],
    receipt: Receipt,
) -> tuple[str, str, dict[str, Any]]:
    context = dict(shared.context)
    event: dict[str, Any] = {"type": kind, **mapped}
    if kind == "track" and "groupId" in shared.identity:
        # An account's event: the Spec names a track call's group in context.groupId.
        context["groupId"] = shared.identity["groupId"]
    else:
        event.update(shared.identity)
    koala: dict[str, Any] = {
        "level": shared.level,
        "list": list_name,
        "request": shared.leftovers,
        "entry": entry_leftovers,
    }
    if "messageId" not in event:
        # Koala: without message_id a retried event may be captured twice; so here too.
        event["messageId"] = str(uuid.uuid4())
        koala["messageIdGenerated"] = True
    context["koala"] = koala
    event["context"] = context
    return event["messageId"], kind, canonical(event, receipt)


# -- encode ------------------------------------------------------------------------------------


#: One event as Koala takes it: the level, the request's head (its person or account), the
#: list its entry goes in (``None``: a request with no entries) and the entry (a dict, or a
#: struct that encodes as that dict would: ``trackyard.wire._koala_typed``).
Entry = tuple[Level, dict[str, Any], str | None, dict[str, Any] | msgspec.Struct]
#: An entry as this module builds it (a dict).
_DictEntry = tuple[Level, dict[str, Any], str | None, dict[str, Any]]


def encode(events: Iterable[dict[str, Any]]) -> list[KoalaRequest]:
    """Canonical events -> Koala requests, in order; consecutive events of one person (or
    account) share a request, up to Koala's 30 entries per list.

    Events that came in as Koala give back exactly the request they came from. Others are
    mapped best-effort (docs/formats/koala.md); those Koala cannot express (``alias``, an
    event with no person Koala can name) are skipped: :func:`entry_of` says why.
    """
    entries: list[tuple[None, Entry]] = []
    for event in events:
        try:
            entries.append((None, entry_of(event)))
        except ValueError:
            continue
    return [request for request, _ in group(entries)]


def group(
    entries: Iterable[tuple[T, Entry]], *, by_person: bool = False
) -> list[tuple[KoalaRequest, list[T]]]:
    """Entries (each with a tag, such as the event it came from) into requests, in order, with
    the tags of each request's entries, up to Koala's 30 entries per list.

    Consecutive entries of one person (or account) share a request; with ``by_person``, all
    of a person's entries do, wherever they are (a person's entries keep their order, and
    the requests are in the order of each one's first entry), which takes a stream of
    interleaved people in far fewer requests."""
    requests: list[tuple[KoalaRequest, list[T]]] = []
    #: The open request of each head (by its sorted JSON): its body, and its entries' tags.
    open_requests: dict[bytes, tuple[dict[str, Any], list[T]]] = {}
    for tag, (level, head, list_name, entry) in entries:
        key = _sorted_encoder.encode([level, head])
        current = open_requests.get(key)
        if current is None or len(current[0].get(list_name or "", ())) >= MAX_PROFILE_ENTRIES:
            if not by_person:
                open_requests.clear()
            request = KoalaRequest(level, dict(head))
            current = open_requests[key] = (request.body, [])
            requests.append((request, current[1]))
        body, tags = current
        if list_name is not None:
            body.setdefault(list_name, []).append(entry)
        tags.append(tag)
    return requests


def entry_of(event: dict[str, Any], *, carry_message_id: bool = False) -> Entry:
    """One canonical event as Koala takes it; a ``ValueError`` says why Koala cannot.

    ``carry_message_id`` (delivering onward): every entry carries the event's ``messageId``
    as ``message_id``, also where the original request had none (trackyard made one up) or
    no entry at all (it becomes an ``identifies`` entry without traits), so that a receiver
    dedups a redelivered event.
    """
    koala = (event.get("context") or {}).get("koala")
    if isinstance(koala, dict) and "request" in koala:
        level, head, list_name, entry = _exact(event, koala)
    else:
        level, head, list_name, entry = _best_effort(event)
    if carry_message_id:
        if list_name is None:
            list_name, entry = "identifies", {"type": "identify"}
        entry["message_id"] = event["messageId"]
    return level, head, list_name, entry


def _exact(event: dict[str, Any], koala: dict[str, Any]) -> _DictEntry:
    level: Level = koala["level"]
    context = event["context"]
    head: dict[str, Any] = {}
    if level == "profile" and "anonymousId" in event:
        head["profile_id"] = event["anonymousId"]
    for external in context.get("externalIds", ()):
        head[_EXTERNAL_FIELD[external["type"]]] = external["id"]
    if "ip" in context:
        head["ip"] = context["ip"]
    head.update(koala["request"])
    list_name = koala["list"]
    if list_name is None:
        return level, head, None, {}
    koala_type = LISTS[level][list_name][0]
    entry: dict[str, Any] = {"type": koala_type}
    if not koala.get("messageIdGenerated"):
        entry["message_id"] = event["messageId"]
    for key, (field, _) in _ENTRY_FIELDS[koala_type].items():
        if field in event:
            entry[key] = event[field]
    if "originalTimestamp" in event:
        entry["sent_at"] = event["originalTimestamp"]
    entry.update(koala["entry"])
    return level, head, list_name, entry


_BEST_EFFORT_LISTS: Final = {"track": "events", "identify": "identifies", "page": "page_views"}


def _best_effort(event: dict[str, Any]) -> _DictEntry:
    """Any other canonical event (Segment's, another vendor's) as Koala would best take it;
    a ``ValueError`` when it cannot."""
    kind = "page" if event.get("type") == "screen" else event.get("type")
    context = event.get("context") or {}
    entry: dict[str, Any] = {"message_id": event.get("messageId")}
    sent_at = event.get("originalTimestamp") or event.get("timestamp")
    if sent_at is not None:
        entry["sent_at"] = sent_at
    if kind == "group":
        if not event.get("groupId"):
            raise ValueError("a group call without a groupId has no Koala account to go to")
        entry = {"type": "identify", "traits": event.get("traits") or {}, **entry}
        return "account", {"account_id": event["groupId"]}, "identifies", entry
    if kind not in _BEST_EFFORT_LISTS:
        # alias: Koala merges profiles itself and has no call for it
        raise ValueError(f"a {kind} call has no Koala counterpart")
    head: dict[str, Any] = {}
    if event.get("anonymousId"):
        head["profile_id"] = event["anonymousId"]
    email = _email_of(event, context)
    if email:
        head["email"] = email
    if not head:
        raise ValueError("no email and no anonymousId: Koala names a person by email or profile_id")
    koala_type = LISTS["profile"][_BEST_EFFORT_LISTS[kind]][0]
    entry = {"type": koala_type, **entry}
    for key, (field, _) in _ENTRY_FIELDS[koala_type].items():
        if field in event:
            entry[key] = event[field]
    return "profile", head, _BEST_EFFORT_LISTS[kind], entry


def _email_of(event: dict[str, Any], context: dict[str, Any]) -> str | None:
    for external in context.get("externalIds") or ():
        if isinstance(external, dict) and external.get("type") == "email":
            return str(external.get("id"))
    for traits in (event.get("traits"), context.get("traits")):
        if isinstance(traits, dict) and isinstance(traits.get("email"), str):
            return traits["email"]  # type: ignore[no-any-return]
    user_id = event.get("userId")
    return user_id if isinstance(user_id, str) and "@" in user_id else None

"""The fast path for delivering stored events to Koala: one typed, C-level decode per event.

:func:`trackyard.wire.koala.entry_of` works on the whole decoded event and is the
reference. Most events delivered to Koala, though, are plain best-effort ones (a Segment
``track``, ``page``, ``screen`` or ``identify`` naming its person by email or
``anonymousId``): for those, decoding only the fields an entry needs into :class:`_Event`
skips building the rest of the event (its ``context.library``, ``integrations``, the
times Koala does not take), which was about half of an event's encoding.

Anything else (an event that came in as Koala, a ``group`` or ``alias``, no person, a
field of an unexpected type, no ``messageId``) makes :func:`entry_of_stored` return
``None``, and the caller takes the reference path, which decides and words it. So the fast
path never decides anything on its own; ``tests/wire/test_koala_typed.py`` checks that
both paths give the same entries on generated events.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET

from trackyard.wire._json import DECODE_ERRORS
from trackyard.wire.koala import Entry


class _Track(msgspec.Struct, gc=False):
    """An ``events`` entry, its keys in the reference's order (``UNSET``: left out, as there)."""

    type: str
    message_id: Any
    sent_at: Any = UNSET
    event: Any = UNSET
    properties: Any = UNSET


class _Page(msgspec.Struct, gc=False):
    """A ``page_views`` entry."""

    type: str
    message_id: Any
    sent_at: Any = UNSET
    name: Any = UNSET
    properties: Any = UNSET


class _Identify(msgspec.Struct, gc=False):
    """An ``identifies`` entry."""

    type: str
    message_id: Any
    sent_at: Any = UNSET
    traits: Any = UNSET


#: Canonical type -> the Koala list its entry goes in.
_LIST_OF: Final = {"track": "events", "identify": "identifies", "page": "page_views", "screen": "page_views"}


class _Context(msgspec.Struct, gc=False):
    """The context fields an entry reads: where the email may be, and whether it came as Koala
    (``None`` for absent: the reference reads these with ``get``)."""

    externalIds: Any = None
    traits: Any = None
    koala: Any = None


class _Event(msgspec.Struct, gc=False):
    """The event fields a best-effort entry reads: ``UNSET`` where the reference tells absent
    from ``null`` (``in``), ``None`` where it reads them with ``get``. A ``type`` that is not
    a string fails the decode (the reference path then)."""

    type: str | None = None
    messageId: Any = UNSET
    anonymousId: Any = None
    userId: Any = None
    event: Any = UNSET
    name: Any = UNSET
    properties: Any = UNSET
    traits: Any = UNSET
    timestamp: Any = None
    originalTimestamp: Any = None
    context: _Context | None = None


_decoder = msgspec.json.Decoder(_Event)


def entry_of_stored(body: bytes) -> Entry | None:
    """A stored event's entry, as ``entry_of(decoded, carry_message_id=True)`` gives it, for a
    plain best-effort event; ``None`` to take the reference path."""
    try:
        event = _decoder.decode(body)
    except DECODE_ERRORS:
        return None
    context = event.context
    list_name = _LIST_OF.get(event.type)  # type: ignore[arg-type]
    if list_name is None or event.messageId is UNSET or (context is not None and context.koala is not None):
        return None  # (a koala context: perhaps it came in as Koala, the exact path)
    head: dict[str, Any] = {}
    if event.anonymousId:
        head["profile_id"] = event.anonymousId
    if event.traits is UNSET and (context is None or context.externalIds is context.traits is None):
        user_id = event.userId  # the usual case: the email is the userId, or there is none
        email = user_id if type(user_id) is str and "@" in user_id else None
    else:
        email = _email_of(event, context)
        if email is UNSET:
            return None
    if email:
        head["email"] = email
    if not head:
        return None
    sent_at = event.originalTimestamp or event.timestamp
    if sent_at is None:
        sent_at = UNSET
    entry: msgspec.Struct
    kind = event.type
    if kind == "track":
        entry = _Track("track", event.messageId, sent_at, event.event, event.properties)
    elif kind == "identify":
        entry = _Identify("identify", event.messageId, sent_at, event.traits)
    else:  # page, screen
        entry = _Page("page", event.messageId, sent_at, event.name, event.properties)
    return "profile", head, list_name, entry


def _email_of(event: _Event, context: _Context | None) -> Any:
    """As ``koala._email_of``; ``UNSET`` where that one would not get through (the reference
    path decides)."""
    if context is not None and context.externalIds:
        if type(context.externalIds) is not list:
            return UNSET
        for external in context.externalIds:
            if isinstance(external, dict) and external.get("type") == "email":
                return str(external.get("id"))
    for traits in (event.traits, None if context is None else context.traits):
        if isinstance(traits, dict) and isinstance(traits.get("email"), str):
            return traits["email"]
    user_id = event.userId
    return user_id if isinstance(user_id, str) and "@" in user_id else None

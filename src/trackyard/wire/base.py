"""What every wire format provides, and what it is given: the decoded request and the receipt.

A format is pure: :meth:`Format.decode` takes the body's bytes and returns a
:class:`Decoded` request (its items, the write keys found in it, the envelope fields that
apply to every item), or raises ``IngestError`` with a code and a message.
:meth:`Format.normalize` turns one item into a canonical event once the source is known.
``trackyard.ingest.pipeline`` runs them; no format knows about HTTP or the store.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from trackyard.errors import CallError, IngestError
from trackyard.event import API_VERSION, format_timestamp, ordered

#: How a format refuses items: each alone (the others are stored), the whole request on the
#: first refused item, or a whole batch keeping every message apart ("atomic").
Policy = Literal["each", "whole", "atomic"]

Normalized = tuple[str, str, bytes]
"""``(messageId, type, canonical JSON)`` of one event."""


@dataclass(slots=True)
class Receipt:
    """What is known about a request once its source is: where, when, from whom, and its envelope."""

    route: str
    received_at_us: int
    source_tag: dict[str, Any]
    client_ip: str | None = None
    write_key: str | None = None
    sent_at: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None

    @property
    def received_at(self) -> str:
        return format_timestamp(self.received_at_us)


def source_tag(source_id: int, source_name: str, format_name: str, route: str) -> dict[str, Any]:
    """The ``source`` field of every stored event: which source, format and route it came by."""
    return {"id": source_id, "name": source_name, "format": format_name, "route": route}


def canonical(event: dict[str, Any], receipt: Receipt) -> dict[str, Any]:
    """Write the canonical tail (receivedAt, timestamp, version, source) and the field order."""
    received_at = receipt.received_at
    event["receivedAt"] = received_at
    event.setdefault("timestamp", received_at)
    event.setdefault("version", API_VERSION)
    event["source"] = receipt.source_tag
    return ordered(event)


@dataclass(slots=True)
class Decoded:
    """A request body taken apart, before anyone knows whether its sender may send it."""

    items: Sequence[Any]
    #: Write keys the body carries (Segment's ``writeKey``), for formats that carry one there.
    write_keys: tuple[str, ...] = ()
    sent_at: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    #: The events the rate limit counts, when that is not one per item.
    cost: int | None = None


class Credentials(NamedTuple):
    """Where a request says who sends it, as the format reads its transport.

    ``forms`` are the forms one write key may take, tried in order (the last one's error is
    the answer when none is known). ``project`` is set for project-scoped credentials
    (Bloomreach: the key must be the key of the project named in the path; ``secret`` is
    the optional private half). ``missing`` is what to say when no key came at all. A named
    tuple: one is built per request.
    """

    forms: tuple[str, ...]
    missing: str
    project: str | None = None
    secret: str | None = None


Item = TypeVar("Item")


class Format(Generic[Item]):
    """One wire format on one kind of route, whose decoded items are ``Item``s."""

    name: ClassVar[str]
    policy: ClassVar[Policy] = "whole"
    #: Whether the body may carry the write key: then it is decoded before authorizing.
    keys_in_body: ClassVar[bool] = False
    #: Whether the answer is built from the decoded items (Bloomreach's, a result per
    #: command). Otherwise the pipeline lets go of the body and its items once the events
    #: are built, before it waits for the commit.
    answers_from_items: ClassVar[bool] = False

    def credentials(
        self, authorization: str | None, path_key: str | None, query_key: str | None, body_keys: Sequence[str]
    ) -> Credentials:
        """The request's credentials; the default is a key in the URL path (Koala's)."""
        return Credentials((path_key,) if path_key else (), "No write key in the path.")

    def decode(self, body: bytes) -> Decoded:
        raise NotImplementedError

    def normalize(self, item: Item, receipt: Receipt) -> Normalized | None:
        """One item as a canonical event; ``None`` for an item answered but not stored.

        Raises ``CallError``.
        """
        raise NotImplementedError

    def item_bytes(self, item: Item) -> bytes:
        """What is kept of an item refused alone: its own bytes."""
        raw: Any = item  # msgspec.Raw or bytes for every format that keeps items apart
        return bytes(raw)

    def batch_refused(self, rejected: Sequence[tuple[int, CallError]]) -> IngestError:
        """The refusal of a whole batch for the items in ``rejected`` (the "atomic" policy)."""
        raise NotImplementedError


# Cached: a source's SDKs send the same header on every request, and decoding it is a
# fair share of a single event's cost. The function is pure, and the cache is bounded.
@lru_cache(maxsize=1024)
def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of ``Authorization: Basic base64(user:password)``; the colon is optional."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return (user, password) if user else None


@lru_cache(maxsize=1024)
def basic_username(authorization: str | None) -> str | None:
    """The username of ``Authorization: Basic``: how Segment's SDKs send the write key."""
    credentials = basic_credentials(authorization)
    return None if credentials is None else credentials[0]

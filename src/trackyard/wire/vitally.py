"""Vitally's HTTPS Analytics API format: decode its messages into canonical events and back.

The rules and their sources are in ``shared/reference/vendors.md`` section 3; the choices
made where Vitally documents nothing are in ``docs/formats/vitally.md``.

Lossless: every key of a message either becomes a Spec field or is kept under
``context.vitally``: ``type`` (the Vitally message type), ``fields`` (keys with no Spec home,
unknown keys and ``null`` values included), ``raw`` (the original value of a key whose
canonical form differs, e.g. a numeric ``accountId`` or a ``messageId`` made unique per type)
and ``hashedMessageId`` (the client sent no usable ``messageId``). :func:`encode` reads them
back, so ``encode(decode(m)) == m`` for every valid message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec

from trackyard.errors import CallError, IngestError
from trackyard.event import format_timestamp, parse_timestamp
from trackyard.wire._json import DECODE_ERRORS, decode_item, decode_json, invalid_json, json_type
from trackyard.wire.base import Credentials, Decoded, Format, Normalized, Receipt, basic_username, canonical

FORMAT: Final = "vitally"
MAX_BATCH_MESSAGES: Final = 100
MESSAGE_TYPES: Final = ("organization", "account", "user", "track", "unlink", "customobjectinstance")

#: ``context.externalIds`` types for the ids Vitally keys its accounts and organizations by.
ACCOUNT_ID: Final = "vitally_account_id"
ORGANIZATION_ID: Final = "vitally_organization_id"
_COLLECTIONS: Final = {ACCOUNT_ID: "accounts", ORGANIZATION_ID: "organizations"}
_ID_TYPES: Final = (("accountId", ACCOUNT_ID), ("organizationId", ORGANIZATION_ID))

#: Keys that only identify a message, left out of the hash that stands in for a missing messageId.
_NOT_HASHED: Final = frozenset({"type", "messageId"})

T = TypeVar("T")

_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()


# -- request bodies ---------------------------------------------------------------------------


def decode_batch(body: bytes) -> list[msgspec.Raw]:
    """The messages of a batch body, each left raw so it can be measured and refused alone."""
    try:
        return _batch_decoder.decode(body)
    except msgspec.ValidationError:
        raise IngestError(
            "invalid_batch",
            f"The batch body must be a JSON array of messages, not {json_type(decode_json(body))}.",
        ) from None
    except DECODE_ERRORS as exc:
        raise invalid_json(exc) from None


# -- one message -> one canonical event --------------------------------------------------------


#: What an object or string field is called in errors, and the hint when it is missing.
_EXPECTED: Final[dict[type, tuple[str, str]]] = {
    dict: ("an object", "an object; {} is allowed"),
    str: ("a string", "a non-empty string"),
}


class _Message:
    """A message being taken apart: every key consumed into the event leaves ``rest``."""

    __slots__ = ("kind", "rest", "raw")

    def __init__(self, kind: str, item: dict[str, Any]) -> None:
        self.kind = kind
        self.rest = dict(item)
        self.raw: dict[str, Any] = {}

    def missing(self, what: str) -> CallError:
        return CallError("missing_field", f"A {self.kind} message needs {what}.")

    def id(self, key: str, *, required: bool = False, consume: bool = True) -> str | None:
        """An id as a string; numbers (legacy docs) are accepted, ``null`` and "" count as absent."""
        value = self.rest.get(key)
        if value is None or value == "":
            if required:
                raise self.missing(f"{key} (a string)")
            return None
        if isinstance(value, str):
            text = value
        elif isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            if consume:
                self.raw[key] = value
        else:
            raise CallError("invalid_field", f"{key} must be a string, not {json_type(value)}.")
        if consume:
            del self.rest[key]
        return text

    def object(self, key: str, *, required: bool = False) -> dict[str, Any] | None:
        return self._take(key, dict, required=required)

    def string(self, key: str, *, required: bool = False, consume: bool = True) -> str | None:
        return self._take(key, str, required=required, consume=consume)

    def _take(self, key: str, expected: type[T], *, required: bool, consume: bool = True) -> T | None:
        noun, hint = _EXPECTED[expected]
        value = self.rest.get(key)
        if value is None or (value == "" and expected is str):
            if required:
                raise self.missing(f"{key} ({hint})")
            return None
        if not isinstance(value, expected):
            raise CallError("invalid_field", f"{key} must be {noun}, not {json_type(value)}.")
        if consume:
            del self.rest[key]
        return value

    def external_ids(self) -> list[dict[str, str]]:
        ids = []
        for key, id_type in _ID_TYPES:
            value = self.id(key)
            if value is not None:
                ids.append(
                    {"id": value, "type": id_type, "collection": _COLLECTIONS[id_type], "encoding": "none"}
                )
        return ids


def decode(item: Any, route_type: str | None, receipt: Receipt) -> tuple[str, str, dict[str, Any]]:
    """Validate one message and turn it into a canonical event.

    ``route_type`` is the type the route implies, ``None`` in a batch, where each message
    names its own. Returns ``(messageId, canonical type, event)``; raises ``CallError``.
    """
    if not isinstance(item, dict):
        raise CallError("invalid_message", f"Each message must be a JSON object, not {json_type(item)}.")
    kind = item.get("type") if route_type is None else route_type
    if kind not in MESSAGE_TYPES:
        raise CallError(
            "invalid_type", f"type must be one of {', '.join(MESSAGE_TYPES)}; got {json_or_absent(kind)}."
        )
    message = _Message(kind, item)
    if route_type is None:
        del message.rest["type"]
    message_id, hashed = _message_id(message, item)
    timestamp = _timestamp(message)
    if hashed and timestamp is None:
        raise message.missing("a messageId or a timestamp")

    event, context = _MAPPERS[kind](message)
    vitally: dict[str, Any] = {"type": kind}
    if message.rest:
        vitally["fields"] = message.rest
    if message.raw:
        vitally["raw"] = message.raw
    if hashed:
        vitally["hashedMessageId"] = True
    context["vitally"] = vitally
    event["messageId"] = message_id
    event["context"] = context
    if timestamp is not None:
        event["originalTimestamp"] = item["timestamp"]
        event["timestamp"] = format_timestamp(timestamp)
    return message_id, event["type"], canonical(event, receipt)


def json_or_absent(value: object) -> str:
    return "nothing" if value is None else msgspec.json.encode(value).decode()


def _message_id(message: _Message, item: dict[str, Any]) -> tuple[str, bool]:
    """The dedup key, scoped by message type (Vitally's own example reuses one messageId for an
    organization, an account, a user and a track); a hash of the message when it has none."""
    original = message.rest.get("messageId")
    client_id = message.id("messageId", consume=False)
    if client_id is not None:
        del message.rest["messageId"]
        message.raw["messageId"] = original
        return f"{message.kind}:{client_id}", False
    hashed = {key: value for key, value in item.items() if key not in _NOT_HASHED}
    digest = hashlib.sha256(msgspec.json.encode(hashed, order="sorted")).hexdigest()
    return f"{message.kind}:{digest}", True


def _timestamp(message: _Message) -> int | None:
    value = message.rest.get("timestamp")
    if value is None:
        return None
    try:
        micros = parse_timestamp(value)
        format_timestamp(micros)
    except (ValueError, TypeError, OverflowError, OSError):
        raise CallError(
            "invalid_timestamp",
            "timestamp must be an ISO-8601 date-time string, such as 2018-05-15T12:31:12.123Z.",
        ) from None
    del message.rest["timestamp"]
    return micros


Mapped = tuple[dict[str, Any], dict[str, Any]]


def _with_ids(event: dict[str, Any], ids: list[dict[str, str]]) -> Mapped:
    return event, ({"externalIds": ids} if ids else {})


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _user(message: _Message) -> Mapped:
    user_id = message.id("userId", required=True)
    traits = message.object("traits", required=True)
    ids = message.external_ids()
    if not ids:
        raise message.missing("an accountId or an organizationId")
    return _with_ids({"type": "identify", "userId": user_id, "traits": traits}, ids)


def _account(message: _Message) -> Mapped:
    account_id = message.id("accountId", required=True)
    traits = message.object("traits")
    organization = message.external_ids()
    return _with_ids(_drop_none(type="group", groupId=account_id, traits=traits), organization)


def _organization(message: _Message) -> Mapped:
    organization_id = message.id("organizationId", required=True)
    traits = message.object("traits")
    return _drop_none(type="group", groupId=organization_id, traits=traits), {}


def _track(message: _Message) -> Mapped:
    user_id = message.id("userId")
    name = message.string("event", required=True)
    properties = message.object("properties", required=True)
    ids = message.external_ids()
    if user_id is None and not any(i["type"] == ACCOUNT_ID for i in ids):
        raise message.missing("a userId or an accountId")
    event = _drop_none(type="track", userId=user_id, event=name, properties=properties)
    return _with_ids(event, ids)


def _unlink(message: _Message) -> Mapped:
    # Vitally's own Segment integration unlinks with ``traits.company = {id, remove: true}``.
    user_id = message.id("userId", required=True)
    account_id = message.id("accountId", required=True)
    traits = {"company": {"id": account_id, "remove": True}}
    return {"type": "identify", "userId": user_id, "traits": traits}, {}


def _custom_object_instance(message: _Message) -> Mapped:
    external_id = message.id("externalId", required=True)
    message.id("customObjectId", required=True, consume=False)
    message.string("name", consume=False)
    traits = message.object("traits", required=True)
    ids = message.external_ids()
    if not ids:
        raise message.missing("an accountId or an organizationId")
    return _with_ids({"type": "group", "groupId": external_id, "traits": traits}, ids)


_MAPPERS: Final = {
    "organization": _organization,
    "account": _account,
    "user": _user,
    "track": _track,
    "unlink": _unlink,
    "customobjectinstance": _custom_object_instance,
}


# -- canonical event -> Vitally message -------------------------------------------------------


def encode(event: dict[str, Any], *, batched: bool = False) -> dict[str, Any]:
    """The Vitally message for a canonical event; ``batched`` adds the batch element's ``type``.

    Events that came in as Vitally messages give back exactly what was sent. Others are
    mapped by their Spec type: identify -> user, group -> account, track -> track.
    """
    context = event.get("context") or {}
    vitally = context.get("vitally") or {}
    kind = vitally.get("type") or _VITALLY_TYPE.get(event["type"])
    if kind is None:
        raise ValueError(f"A {event['type']} call has no Vitally counterpart.")
    native = bool(vitally)
    ids = {x.get("type"): x.get("id") for x in context.get("externalIds") or () if isinstance(x, dict)}
    message: dict[str, Any] = {}
    if kind in ("user", "track", "unlink"):
        _put(message, "userId", event.get("userId"))
    if kind == "track":
        message["event"] = event.get("event")
        message["properties"] = event.get("properties", {})
    if kind == "unlink":
        message["accountId"] = event["traits"]["company"]["id"]
    elif kind in _GROUP_ID_KEY:
        message[_GROUP_ID_KEY[kind]] = event.get("groupId")
    if kind != "unlink" and ("traits" in event or (not native and kind != "track")):
        message["traits"] = event.get("traits", {})
    for key, id_type in _ID_TYPES:
        if key not in message:
            _put(message, key, ids.get(id_type))
    if not native:
        message["messageId"] = event.get("messageId")
    if "originalTimestamp" in event:
        message["timestamp"] = event["originalTimestamp"]
    elif not native:
        message["timestamp"] = event.get("timestamp")
    message.update(vitally.get("raw", ()))
    message.update(vitally.get("fields", ()))
    if batched:
        message["type"] = kind
    return message


_VITALLY_TYPE: Final = {"identify": "user", "group": "account", "track": "track"}
#: The message key a group event's ``groupId`` comes back as, by Vitally type.
_GROUP_ID_KEY: Final = {
    "account": "accountId",
    "organization": "organizationId",
    "customobjectinstance": "externalId",
}


def _put(message: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        message[key] = value


# -- requests ------------------------------------------------------------------------------------

NO_WRITE_KEY: Final = (
    "No write key. Send 'Authorization: Basic <write key>' (the key as it is, or base64 of '<write key>:')."
)


def write_key_candidates(authorization: str | None) -> tuple[str, ...]:
    """What a ``Basic`` token may hold: the key itself (as Vitally's docs paste it), the key with
    a trailing colon, or base64 of ``key`` / ``key:`` (as HTTP clients send Basic auth)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token:
        return ()
    candidates = [token]
    if token.endswith(":") and len(token) > 1:
        candidates.append(token[:-1])
    decoded = basic_username(authorization)
    if decoded is not None and decoded not in candidates:
        candidates.append(decoded)
    return tuple(candidates)


class _Vitally(Format[Any]):
    name = FORMAT

    def credentials(
        self, authorization: str | None, path_key: str | None, query_key: str | None, body_keys: Sequence[str]
    ) -> Credentials:
        return Credentials(write_key_candidates(authorization), NO_WRITE_KEY)


class VitallyMessage(_Vitally):
    """A single route (``/analytics/v1/track`` ...): one message, its type from the route."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def decode(self, body: bytes) -> Decoded:
        return Decoded((decode_json(body),))

    def normalize(self, item: Any, receipt: Receipt) -> Normalized:
        message_id, kind, event = decode(item, self.kind, receipt)
        return message_id, kind, _encoder.encode(event)


class VitallyBatch(_Vitally):
    """``/analytics/v1/batch``: all or nothing, every message of a refused batch kept apart."""

    policy = "atomic"

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def decode(self, body: bytes) -> Decoded:
        items = decode_batch(body)
        if len(items) > MAX_BATCH_MESSAGES:
            raise IngestError(
                "batch_too_large",
                f"The batch has {len(items):,} messages; the limit is {MAX_BATCH_MESSAGES}."
                " Split it into smaller batches. Nothing in this batch was stored.",
                parts=[bytes(raw) for raw in items],
            )
        return Decoded(items)

    def normalize(self, item: msgspec.Raw, receipt: Receipt) -> Normalized:
        if len(item) > self.max_message_bytes:
            raise CallError(
                "message_too_large", f"The message is larger than {self.max_message_bytes:,} bytes of JSON."
            )
        message_id, kind, event = decode(decode_item(item), None, receipt)
        return message_id, kind, _encoder.encode(event)

    def batch_refused(self, rejected: Sequence[tuple[int, CallError]]) -> IngestError:
        index, first = rejected[0]
        summary = (
            f"Message {index} of the batch is invalid: {first.message}"
            + (f" ({len(rejected) - 1} more invalid, listed in 'errors')." if len(rejected) > 1 else "")
            + " Nothing in this batch was stored."
        )
        errors = [{"index": i, "code": error.code, "message": error.message} for i, error in rejected]
        return IngestError("invalid_batch", summary, errors=errors)

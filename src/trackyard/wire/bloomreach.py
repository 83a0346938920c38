"""Bloomreach Engagement's Tracking API format (formerly Exponea): commands <-> canonical events.

The vendor message is one *command*, ``{"name", "data", "command_id"?}``, as it appears in
``POST /batch``; a single route's body is the ``data`` of a command named after the route.
Sources and the choices made where they are silent: ``shared/reference/vendors.md`` section 2
and ``docs/formats/bloomreach.md``.

Lossless: whatever of a command has no canonical home (the command name and ``command_id``,
``null`` fields, ``age``, ``update_timestamp``, ids that are not valid, unknown fields) is kept
under ``context.bloomreach``, so :func:`encode` rebuilds exactly the command that
:func:`decode` was given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from trackyard.errors import CallError, IngestError
from trackyard.event import format_timestamp, parse_timestamp, seconds_to_micros
from trackyard.wire._json import DECODE_ERRORS
from trackyard.wire.base import (
    Credentials,
    Decoded,
    Format,
    Normalized,
    Receipt,
    basic_credentials,
    canonical,
)

FORMAT: Final = "bloomreach"

CUSTOMERS: Final = "customers"
EVENTS: Final = "customers/events"
CLICKS: Final = "campaigns/clicks"
SYSTEM_TIME: Final = "system/time"
#: Commands that carry data to store; ``system/time`` only asks for the clock.
STORED_COMMANDS: Final = frozenset({CUSTOMERS, EVENTS, CLICKS})

#: "Each command size must be less than 800 KBytes"; "the value of every event/customer
#: property must be less than 16 KBytes" (KB = 1,024 bytes, as trackyard's other limits).
MAX_COMMAND_BYTES: Final = 800 * 1024
MAX_PROPERTY_BYTES: Final = 16 * 1024
MAX_BATCH_COMMANDS: Final = 50
#: The largest body a valid batch can have: 50 commands just under the command limit.
MAX_REQUEST_BYTES: Final = MAX_BATCH_COMMANDS * MAX_COMMAND_BYTES

#: The canonical event name of a campaign click (``/campaigns/clicks`` has no event type).
CAMPAIGN_CLICK_EVENT: Final = "campaign_click"
#: The hard id that becomes ``userId`` and the soft id that becomes ``anonymousId``.
USER_ID_TYPE: Final = "registered"
ANONYMOUS_ID_TYPE: Final = "cookie"

# Bloomreach's own error texts (seed 002, vendors.md 2.3 and 2.9).
NO_ID: Final = "At least one id should be specified."
NO_VALID_ID: Final = "At least one valid id should be specified"
NO_EVENT_TYPE: Final = "Field 'event_type' is required."
# Bloomreach documents the limit, not its text: this words it as the docs do.
TOO_LARGE: Final = "Message must be less than 800 KBytes."

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")


class Batch(msgspec.Struct):
    """A batch body. Commands stay raw so each one's exact size is checked before decoding
    and a refused one is kept byte for byte."""

    commands: list[msgspec.Raw]


_batch_decoder = msgspec.json.Decoder(Batch)


def invalid_json() -> IngestError:
    return IngestError("invalid_json", "Invalid JSON")


def decode_json(body: bytes | msgspec.Raw) -> Any:
    try:
        return _decoder.decode(body)
    except DECODE_ERRORS:
        raise invalid_json() from None


def decode_batch(body: bytes) -> list[msgspec.Raw]:
    try:
        commands = _batch_decoder.decode(body).commands
    except msgspec.ValidationError as exc:
        raise IngestError("invalid_batch", f"Invalid batch: {exc}.") from None
    except DECODE_ERRORS:
        raise invalid_json() from None
    if not commands:
        raise IngestError("empty_batch", "At least one command is required in 'commands'.")
    if len(commands) > MAX_BATCH_COMMANDS:
        raise IngestError(
            "batch_too_large",
            f"The batch has {len(commands)} commands; at most {MAX_BATCH_COMMANDS} are allowed per request.",
        )
    return commands


def message_id(name: str, data: Any) -> str:
    """The dedup key: Bloomreach commands carry no id, so a retry of the same command (same
    name and data, whatever its key order or whitespace) must hash to the same value."""
    digest = hashlib.sha256(_sorted_encoder.encode([name, data])).hexdigest()
    return f"br-{digest}"


def command_name(command: dict[str, Any]) -> str:
    """The command's name if trackyard knows it, else a ``CallError``."""
    name = command.get("name")
    if isinstance(name, str) and (name == SYSTEM_TIME or name in STORED_COMMANDS):
        return name
    raise CallError(
        "unknown_command",
        f"Unknown command name {name!r}; use customers, customers/events, campaigns/clicks or system/time.",
    )


def decode(command: dict[str, Any], receipt: Receipt) -> tuple[str, str, dict[str, Any]]:
    """Validate a stored command and turn it into a canonical event.

    Returns ``(messageId, type, event)``; raises ``CallError`` with Bloomreach's error text.
    ``command`` is not modified.
    """
    name = command_name(command)
    if name == SYSTEM_TIME:
        raise CallError("not_stored", "system/time is answered, not stored.")
    data = command.get("data")
    if not isinstance(data, dict):
        raise CallError("invalid_data", "Field 'data' must be a JSON object.")
    rest = dict(data)
    event: dict[str, Any] = {"type": "identify" if name == CUSTOMERS else "track"}
    event["messageId"] = message_id(name, data)
    context: dict[str, Any] = {}
    _identities(rest, event, context, required=name != CLICKS)

    if name == EVENTS:
        event_type = rest.pop("event_type", None)
        if event_type is None or event_type == "":
            raise CallError("event_type_required", NO_EVENT_TYPE)
        if not isinstance(event_type, str):
            raise CallError("event_type_not_string", "Field 'event_type' must be a string.")
        event["event"] = event_type
    elif name == CLICKS:
        url = rest.get("url")
        if not isinstance(url, str) or not url:
            raise CallError("url_required", "Field 'url' is required.")
        event["event"] = CAMPAIGN_CLICK_EVENT

    properties = rest.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise CallError("properties_not_object", "Field 'properties' must be an object.")
        _check_property_sizes(properties, "customer" if name == CUSTOMERS else "event")
        del rest["properties"]
        event["traits" if name == CUSTOMERS else "properties"] = properties

    _times(rest, event, receipt, name)
    bloomreach = {key: value for key, value in command.items() if key != "data"}
    if rest:
        bloomreach["data"] = rest
    context["bloomreach"] = bloomreach
    event["context"] = context
    return event["messageId"], event["type"], canonical(event, receipt)


def valid_id(value: Any) -> bool:
    """Bloomreach: a valid id has an alphanumeric character and is not 'null' or 'undefined'."""
    return (
        isinstance(value, str)
        and any(char.isalnum() for char in value)
        and value.lower() not in ("null", "undefined")
    )


def _identities(rest: dict[str, Any], event: dict[str, Any], context: dict[str, Any], required: bool) -> None:
    """Valid ids go to ``context.externalIds`` (and ``userId``/``anonymousId``); the other
    entries of ``customer_ids`` stay in ``rest`` so that encoding restores them."""
    ids = rest.get("customer_ids")
    if not isinstance(ids, dict) or not ids:
        if required:
            raise CallError("no_id", NO_ID)
        return
    external = [
        {"id": value, "type": kind, "collection": "users", "encoding": "none"}
        for kind, value in ids.items()
        if valid_id(value)
    ]
    if not external:
        if required:
            raise CallError("no_valid_id", NO_VALID_ID)
        return
    if len(external) == len(ids):
        del rest["customer_ids"]
    else:
        rest["customer_ids"] = {kind: value for kind, value in ids.items() if not valid_id(value)}
    context["externalIds"] = external
    if valid_id(ids.get(USER_ID_TYPE)):
        event["userId"] = ids[USER_ID_TYPE]
    if valid_id(ids.get(ANONYMOUS_ID_TYPE)):
        event["anonymousId"] = ids[ANONYMOUS_ID_TYPE]


def _check_property_sizes(properties: dict[str, Any], kind: str) -> None:
    for key, value in properties.items():
        # A string's size is its UTF-8 length; any other value's is its JSON encoding.
        size = len(value.encode()) if isinstance(value, str) else len(_encoder.encode(value))
        if size >= MAX_PROPERTY_BYTES:
            raise CallError(
                "property_too_large",
                f"Value of {kind} property '{key}' must be less than 16 KBytes.",
            )


def _times(rest: dict[str, Any], event: dict[str, Any], receipt: Receipt, name: str) -> None:
    """``timestamp`` is the client's time; the legacy ``age`` (seconds before receipt) stands in
    for it; on customers, ``update_timestamp`` (last write wins) takes precedence."""
    when: int | None = None
    age = rest.get("age")
    if age is not None:
        if not isinstance(age, int | float) or isinstance(age, bool):
            raise CallError("invalid_age", "Field 'age' must be a number of seconds.")
        when = receipt.received_at_us - round(age * 1_000_000)
    stamp = rest.get("timestamp")
    if stamp is not None:
        when = seconds_to_micros(stamp, "timestamp")
        event["originalTimestamp"] = rest.pop("timestamp")
    if name == CUSTOMERS and rest.get("update_timestamp") is not None:
        when = seconds_to_micros(rest["update_timestamp"], "update_timestamp")
    try:
        event["timestamp"] = format_timestamp(receipt.received_at_us if when is None else when)
    except (ValueError, OverflowError, OSError):
        raise CallError("invalid_age", "Field 'age' is out of range.") from None


def encode(event: dict[str, Any]) -> dict[str, Any]:
    """A canonical event as a Bloomreach command; for events decoded here, the exact original.

    Events from other formats become ``customers`` (identify) or ``customers/events`` (any
    other type) with ``userId``/``anonymousId`` as the ``registered``/``cookie`` ids.
    """
    context = event.get("context") or {}
    bloomreach = context.get("bloomreach")
    if isinstance(bloomreach, dict):
        command = {key: value for key, value in bloomreach.items() if key != "data"}
        rest = bloomreach.get("data", {})
    else:
        name = CUSTOMERS if event.get("type") == "identify" else EVENTS
        command, rest = {"name": name}, {}
    name = command["name"]
    data: dict[str, Any] = {}
    ids = {x["type"]: x["id"] for x in context.get("externalIds", ()) if isinstance(x, dict)}
    if bloomreach is None:
        for kind, key in ((USER_ID_TYPE, "userId"), (ANONYMOUS_ID_TYPE, "anonymousId")):
            if event.get(key) is not None:
                ids.setdefault(kind, event[key])
    if "customer_ids" in rest:
        extra = rest["customer_ids"]
        data["customer_ids"] = {**ids, **extra} if isinstance(extra, dict) else extra
    elif ids:
        data["customer_ids"] = ids
    if name == EVENTS:
        data["event_type"] = event.get("event") or event.get("type")
    values = event.get("traits" if name == CUSTOMERS else "properties")
    if values is not None:
        data["properties"] = values
    if "originalTimestamp" in event:
        data["timestamp"] = event["originalTimestamp"]
    elif bloomreach is None and event.get("timestamp"):
        data["timestamp"] = parse_timestamp(event["timestamp"]) / 1_000_000
    for key, value in rest.items():
        data.setdefault(key, value)
    command["data"] = data
    return command


# -- requests ------------------------------------------------------------------------------------


def credentials(authorization: str | None, project: str | None, access_token: str | None) -> Credentials:
    """Public ``Authorization: Token <key>`` (or ``?access_token=``), or private
    ``Authorization: Basic base64(<key>:<secret>)``, for the project named in the path."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    forms: tuple[str, ...] = ()
    secret = None
    if scheme.lower() == "token" and value:
        forms = (value,)
    elif scheme.lower() == "basic" and value and (basic := basic_credentials(authorization)) is not None:
        forms, secret = (basic[0],), basic[1]
    if not forms and access_token:
        forms = (access_token,)
    return Credentials(forms, "Access key not provided", project or "", secret)


class _Bloomreach(Format[Any]):
    name = FORMAT
    answers_from_items = True  # a result per command, its command_id echoed

    def credentials(
        self, authorization: str | None, path_key: str | None, query_key: str | None, body_keys: Sequence[str]
    ) -> Credentials:
        return credentials(authorization, path_key, query_key)


@dataclass(slots=True)
class _Single:
    body: bytes
    command: dict[str, Any]


class BloomreachCommand(_Bloomreach):
    """A single route (``/customers``, ``/customers/events``, ``/campaigns/clicks``): its body is
    the ``data`` of one command named after the route."""

    def __init__(self, command: str) -> None:
        self.command = command

    def decode(self, body: bytes) -> Decoded:
        return Decoded((_Single(body, {"name": self.command, "data": decode_json(body)}),))

    def normalize(self, item: _Single, receipt: Receipt) -> Normalized:
        if len(item.body) >= MAX_COMMAND_BYTES:
            raise CallError("command_too_large", TOO_LARGE)
        message_id, kind, event = decode(item.command, receipt)
        return message_id, kind, _encoder.encode(event)

    def item_bytes(self, item: _Single) -> bytes:
        return item.body


@dataclass(slots=True)
class Command:
    """One command of a batch: its bytes, and the command or why it cannot be one."""

    raw: msgspec.Raw
    command: Any = None
    error: CallError | None = None

    @property
    def asks_time(self) -> bool:
        """A ``system/time`` command: answered with the clock, not stored."""
        return self.error is None and self.command.get("name") == SYSTEM_TIME


def _command(raw: msgspec.Raw) -> Command:
    if len(raw) >= MAX_COMMAND_BYTES:
        return Command(raw, error=CallError("command_too_large", TOO_LARGE))
    try:
        command = _decoder.decode(raw)
    except DECODE_ERRORS:
        return Command(raw, error=CallError("invalid_json", "Invalid JSON"))
    if not isinstance(command, dict):
        return Command(raw, command, CallError("invalid_command", "Command must be a JSON object."))
    try:
        command_name(command)
    except CallError as error:
        return Command(raw, command, error)
    return Command(raw, command)


class BloomreachBatch(_Bloomreach):
    """``POST /batch``: each command alone; a refused one does not stop the others."""

    policy = "each"

    def decode(self, body: bytes) -> Decoded:
        return Decoded([_command(raw) for raw in decode_batch(body)])

    def normalize(self, item: Command, receipt: Receipt) -> Normalized | None:
        if item.error is not None:
            raise item.error
        if item.asks_time:
            return None
        message_id, kind, event = decode(item.command, receipt)
        return message_id, kind, _encoder.encode(event)

    def item_bytes(self, item: Command) -> bytes:
        return bytes(item.raw)

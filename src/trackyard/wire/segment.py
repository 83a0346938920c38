"""Segment's HTTP Tracking API format: decode a request into canonical events.

The rules and their sources are in ``shared/reference/segment.md`` (1.4 validation,
1.7 timestamps, 1.9 enrichment); the error codes are Segment's discard codes where
Segment has one. Since the canonical event *is* a Segment message, encoding back is the
identity on everything the client sent, less the write key.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec

from trackyard.errors import CallError, IngestError
from trackyard.event import EVENT_TYPES, format_timestamp, parse_timestamp
from trackyard.wire._json import DECODE_ERRORS, invalid_json, json_type
from trackyard.wire.base import Receipt as Receipt  # re-exported: the fast path names it from here
from trackyard.wire.base import canonical

FORMAT: Final = "segment"
MAX_MESSAGE_ID_LENGTH: Final = 100

#: Routes that browsers and apps call directly, whose events get ``context.ip``.
CLIENT_SIDE_ROUTES: Final = frozenset(
    {
        "/v1/t",
        "/v1/i",
        "/v1/p",
        "/v1/s",
        "/v1/g",
        "/v1/a",
        "/v1/b",
        "/v1/import",
        "/v1/pixel",
        "/beacon/v1/batch",
    }
)


class Envelope(msgspec.Struct):
    """A batch request. Each item stays raw so its exact size can be checked and it can be
    rejected alone; the envelope's other fields apply to every item."""

    batch: list[msgspec.Raw]
    writeKey: str | None = None
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


def decode_envelope(body: bytes) -> Envelope:
    try:
        return _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise IngestError("invalid_batch", f"The batch is malformed: {exc}.") from None
    except DECODE_ERRORS as exc:
        raise invalid_json(exc) from None


def encode(event: dict[str, Any]) -> bytes:
    return _encoder.encode(event)


def _id(event: dict[str, Any], key: str) -> str | None:
    """An identifier as a string; ``null`` and empty count as absent, numbers become strings."""
    value = event.get(key)
    if value is None or value == "":
        event.pop(key, None)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        event[key] = str(value)
        return event[key]  # type: ignore[no-any-return]
    raise CallError("id_not_string", f"{key} must be a string, not {json_type(value)}.")


def _object(event: dict[str, Any], key: str, code: str) -> None:
    value = event.get(key, {})
    if value is None:
        del event[key]
    elif not isinstance(value, dict):
        raise CallError(code, f"{key} must be an object, not {json_type(value)}.")


def _string(event: dict[str, Any], key: str, code: str) -> None:
    value = event.get(key, "")
    if value is None:
        del event[key]
    elif not isinstance(value, str):
        raise CallError(code, f"{key} must be a string, not {json_type(value)}.")


def _timestamp(value: Any, key: str) -> int:
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise CallError(
            "invalid_timestamp",
            f"{key} must be an ISO-8601 date-time string, such as 2024-05-01T12:00:00.000Z.",
        ) from None


def normalize(item: Any, call_type: str | None, receipt: Receipt) -> tuple[str, str, dict[str, Any]]:
    """Validate one call and enrich it into a canonical event.

    ``call_type`` is the type the route implies, ``None`` in a batch, where each item
    names its own. Returns ``(messageId, type, event)``; raises ``CallError``.
    """
    if not isinstance(item, dict):
        raise CallError("invalid_event", f"Each event must be a JSON object, not {json_type(item)}.")
    event: dict[str, Any] = item
    kind = call_type or event.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:  # a list or object is not hashable
        raise CallError(
            "invalid_type",
            f"type must be one of alias, group, identify, page, screen, track; got {kind!r}.",
        )
    event["type"] = kind

    write_key = event.pop("writeKey", None)
    if write_key is not None and write_key != receipt.write_key:
        raise CallError("write_key_mismatch", "This event's writeKey differs from the request's write key.")

    user_id = _id(event, "userId")
    anonymous_id = _id(event, "anonymousId")
    group_id = _id(event, "groupId")
    previous_id = _id(event, "previousId")
    if kind == "alias":
        if user_id is None or previous_id is None:
            raise CallError("alias_ids_required", "An alias call needs both previousId and userId.")
    elif user_id is None and anonymous_id is None:
        raise CallError("no_user_anon_id", "Every call needs a userId or an anonymousId.")
    if kind == "group" and group_id is None:
        raise CallError("group_id_required", "A group call needs a groupId.")
    if kind == "track":
        name = event.get("event")
        if name is None or name == "":
            raise CallError("event_not_defined", "A track call needs an event name in 'event'.")
        if not isinstance(name, str):
            raise CallError("event_not_string", f"event must be a string, not {json_type(name)}.")
    _string(event, "name", "name_not_string")
    _string(event, "category", "category_not_string")
    _object(event, "properties", "properties_not_object")
    _object(event, "traits", "traits_not_object")
    _object(event, "context", "context_not_object")
    _object(event, "integrations", "integrations_not_object")

    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        message_id = event["messageId"] = str(uuid.uuid4())
    elif not isinstance(message_id, str):
        raise CallError("message_id_not_string", f"messageId must be a string, not {json_type(message_id)}.")
    elif len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise CallError(
            "message_id_too_long", f"messageId is longer than {MAX_MESSAGE_ID_LENGTH} characters."
        )

    _stamp_times(event, receipt)
    _merge_envelope(event, receipt)
    return message_id, kind, canonical(event, receipt)


def _stamp_times(event: dict[str, Any], receipt: Receipt) -> None:
    """``timestamp = receivedAt - (sentAt - originalTimestamp)``: correct the client's clock skew.

    RudderStack's SDKs send the client time only as ``originalTimestamp``; it stands in
    for an absent ``timestamp``, as on RudderStack's own server.
    """
    sent_at = event.get("sentAt") or receipt.sent_at
    time_key = "timestamp" if event.get("timestamp") is not None else "originalTimestamp"
    client_time = event.get(time_key)
    event["receivedAt"] = receipt.received_at
    if sent_at is not None:
        event["sentAt"] = sent_at
    else:
        event.pop("sentAt", None)
    if client_time is None:
        event.pop("originalTimestamp", None)
        event["timestamp"] = event["receivedAt"]
        return
    original = _timestamp(client_time, time_key)
    event["originalTimestamp"] = client_time
    if sent_at is None:
        corrected = original
    else:
        corrected = receipt.received_at_us - (_timestamp(sent_at, "sentAt") - original)
    try:
        event["timestamp"] = format_timestamp(corrected)
    except (ValueError, OverflowError, OSError):
        raise CallError("invalid_timestamp", "timestamp and sentAt are too far apart to correct.") from None


def _merge_envelope(event: dict[str, Any], receipt: Receipt) -> None:
    """Batch-level ``context``/``integrations`` apply to every item; the item's own keys win."""
    if receipt.context:
        event["context"] = {**receipt.context, **event.get("context", {})}
    if receipt.integrations:
        event["integrations"] = {**receipt.integrations, **event.get("integrations", {})}
    ip = receipt.client_ip
    if ip is None:
        return
    context = event.get("context")
    if receipt.route in CLIENT_SIDE_ROUTES or (context is not None and context.get("direct") is True):
        if context is None:
            event["context"] = {"ip": ip}
        elif "ip" not in context:
            context["ip"] = ip

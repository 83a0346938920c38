"""Segment's request bodies as wire formats: a single call (``/v1/track`` ...) and a batch.

Each item takes the typed fast path first (``wire._segment_typed``) and the reference
path (``wire.segment.normalize``) when the fast path leaves the call to it. The write key
comes from Basic auth, else the body's ``writeKey``, else (batches) ``?writeKey=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from trackyard.errors import CallError, IngestError
from trackyard.wire import _segment_typed as typed
from trackyard.wire import segment as reference
from trackyard.wire._json import DECODE_ERRORS, decode_item, decode_json
from trackyard.wire.base import Credentials, Decoded, Format, Normalized, Receipt, basic_username

NO_WRITE_KEY: Final = (
    "No write key. Send it as the 'writeKey' field of the body or as "
    "'Authorization: Basic base64(<writeKey>:)'."
)


def _key(value: object) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) and value else ()


class _Segment(Format[Any]):
    name = reference.FORMAT
    keys_in_body = True
    #: Whether ``?writeKey=`` may carry the key (beacons cannot set headers).
    key_in_query = False

    def credentials(
        self, authorization: str | None, path_key: str | None, query_key: str | None, body_keys: Sequence[str]
    ) -> Credentials:
        write_key = basic_username(authorization) or (body_keys[0] if body_keys else None)
        if not write_key and self.key_in_query:
            write_key = query_key
        return Credentials((write_key,) if write_key else (), NO_WRITE_KEY)


@dataclass(slots=True)
class _Call:
    """A single call's body, decoded the typed way when it is plain, else as a dict."""

    body: bytes
    call: typed.Call | None
    item: Any = None


class SegmentCall(_Segment):
    """``POST /v1/{track,identify,...}`` (and the short forms): one call, its type from the route."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind

    def decode(self, body: bytes) -> Decoded:
        # A plain call is decoded once, typed; anything else the reference way (see wire._segment_typed).
        call = typed.decode_call(body)
        if call is not None:
            key = call.writeKey
            return Decoded((_Call(body, call),), (key,) if isinstance(key, str) and key else ())
        item = decode_json(body)
        return Decoded(
            (_Call(body, None, item),), _key(item.get("writeKey") if isinstance(item, dict) else None)
        )

    def normalize(self, item: _Call, receipt: Receipt) -> Normalized:
        if item.call is not None:
            fast = typed.finish(item.call, self.kind, receipt)
            if fast is not None:
                return fast
            item.item = decode_json(item.body)  # the call was changed in place: start again from the bytes
        message_id, kind, event = reference.normalize(item.item, self.kind, receipt)
        return message_id, kind, reference.encode(event)

    def item_bytes(self, item: _Call) -> bytes:
        return item.body


class SegmentBatch(_Segment):
    """``POST /v1/batch`` (and ``/v1/b``, ``/v1/import``, ``/beacon/v1/batch``): each item alone."""

    policy = "each"
    key_in_query = True

    def __init__(self, max_event_bytes: int, max_batch_events: int) -> None:
        self.max_event_bytes = max_event_bytes
        self.max_batch_events = max_batch_events

    def decode(self, body: bytes) -> Decoded:
        try:
            envelope = reference.decode_envelope(body)
        except IngestError as refused:
            refused.write_keys = _body_key(body)
            raise
        keys = _key(envelope.writeKey)
        if len(envelope.batch) > self.max_batch_events:
            raise IngestError(
                "batch_too_large",
                f"The batch has {len(envelope.batch):,} events; the limit is {self.max_batch_events:,}."
                " Split it into smaller batches.",
                write_keys=keys,
            )
        return Decoded(envelope.batch, keys, envelope.sentAt, envelope.context, envelope.integrations)

    def normalize(self, item: msgspec.Raw, receipt: Receipt) -> Normalized:
        if len(item) > self.max_event_bytes:
            raise CallError(
                "event_too_large", f"The event is larger than {self.max_event_bytes:,} bytes of JSON."
            )
        fast = typed.normalize_raw(item, None, receipt)
        if fast is not None:
            return fast
        message_id, kind, event = reference.normalize(decode_item(item), None, receipt)
        return message_id, kind, reference.encode(event)


def _body_key(body: bytes) -> tuple[str, ...]:
    """The ``writeKey`` of a body that is JSON but not a valid batch, so its refusal can be kept."""
    try:
        decoded = msgspec.json.decode(body)
    except DECODE_ERRORS:
        return ()
    return _key(decoded.get("writeKey")) if isinstance(decoded, dict) else ()

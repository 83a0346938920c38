"""``vitally``: the canonical event encoded back into Vitally's HTTPS Analytics API.

Messages go to ``--url`` + ``/analytics/v1/batch`` as a JSON array of at most 100, within
500 KB a request and 32 KB a message (a larger one is dead-lettered), uncompressed, with
``Authorization: Basic <token>``: the token as it is, as Vitally documents it. Each
message carries the event's ``messageId``; a trackyard receiver scopes it by message type
(``track:<messageId>``, since Vitally's own example reuses one id across types) and dedups
a redelivered event by it.

A batch is all or nothing at a trackyard receiver, so every message is checked with the
receiver's own rules first: an event Vitally cannot express (``page``, ``screen``, ``alias``;
a user with no account or organization) is skipped with why, not sent to fail its batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from trackyard.config import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from trackyard.destinations.kinds.base import (
    Kind,
    Outgoing,
    OutgoingRequest,
    Skipped,
    Unsendable,
    check_receipt,
    chunks,
    decoded,
    json_headers,
    url_under,
)
from trackyard.errors import CallError
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import vitally as wire

_encoder = msgspec.json.Encoder()
#: The ``[`` and ``]`` around the messages.
_ENVELOPE_BYTES = 2


class Vitally(Kind):
    name = wire.FORMAT

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        receipt = check_receipt()
        messages: list[tuple[StoredEvent, bytes]] = []
        for event in events:
            try:
                message = wire.encode(decoded(event), batched=True)
            except ValueError as why:
                yield Skipped(event, str(why))
                continue
            try:
                wire.decode(message, None, receipt)
            except CallError as error:
                yield Skipped(event, f"not a valid Vitally message: {error.message}")
                continue
            encoded = _encoder.encode(message)
            if len(encoded) > MAX_EVENT_BYTES:
                yield Unsendable(event, f"a Vitally message of {len(encoded)} bytes, over 32 KB")
                continue
            messages.append((event, encoded))
        url = url_under(destination, "/analytics/v1/batch")
        headers = json_headers(destination, Authorization=f"Basic {destination.key or ''}")
        for chunk in chunks(messages, wire.MAX_BATCH_MESSAGES, MAX_REQUEST_BYTES, _ENVELOPE_BYTES):
            body = b"[" + b",".join(encoded for _, encoded in chunk) + b"]"
            yield OutgoingRequest(url, body, headers, [event for event, _ in chunk])

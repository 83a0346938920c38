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

from typing import Any

from trackyard.config import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from trackyard.destinations.kinds.base import MessageKind, json_headers, url_under
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import vitally as wire
from trackyard.wire.base import Receipt


class Vitally(MessageKind):
    name = wire.FORMAT
    message_name = "Vitally message"
    max_message_bytes = MAX_EVENT_BYTES
    max_messages = wire.MAX_BATCH_MESSAGES
    max_request_bytes = MAX_REQUEST_BYTES
    overhead = 2  # the [ and ] around the messages

    def message(self, event: StoredEvent, body: dict[str, Any]) -> dict[str, Any]:
        return wire.encode(body, batched=True)

    def check(self, message: dict[str, Any], receipt: Receipt) -> None:
        wire.decode(message, None, receipt)

    def url(self, destination: Destination) -> str:
        return url_under(destination, "/analytics/v1/batch")

    def headers(self, destination: Destination) -> dict[str, str]:
        return json_headers(destination, Authorization=f"Basic {destination.key or ''}")

    def join(self, messages: list[bytes]) -> bytes:
        return b"[" + b",".join(messages) + b"]"

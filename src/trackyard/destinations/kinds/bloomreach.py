"""``bloomreach``: the canonical event encoded back into Bloomreach Engagement's Tracking API.

Commands go to ``--url`` + ``/track/v2/projects/{key}/batch``, at most 50 a request, each
under 800 KB, uncompressed (Bloomreach may answer a gzip body with 400). Auth: with
``--secret``, private ``Authorization: Basic base64(key:secret)``; without, public
``Authorization: Token key``. Bloomreach answers 200 with one result per command, in
order: a command with ``success: false`` is that event's (permanent) failure, the others
are delivered.

Commands carry no message id: a trackyard receiver derives one from a hash of the
command's name and data (``trackyard.wire.bloomreach.message_id``), and the command built
for an event is the same each time, so a redelivered event is stored there once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from trackyard.destinations.kinds.base import (
    MessageKind,
    OutgoingRequest,
    basic_auth,
    json_headers,
    url_under,
)
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import bloomreach as wire
from trackyard.wire.base import Receipt

if TYPE_CHECKING:  # an HTTP worker checks destinations without sending: no httpx, no pycurl
    from trackyard.destinations.transport import Answer

#: Spec types with no Bloomreach command (it has customers and their events, no accounts).
_NO_COMMAND = {
    "alias": "an alias call has no Bloomreach command (Bloomreach merges customers by their ids)",
    "group": "a group call has no Bloomreach command (Bloomreach has no accounts or groups)",
}


class Bloomreach(MessageKind):
    name = wire.FORMAT
    message_name = "Bloomreach command"
    max_message_bytes = wire.MAX_COMMAND_BYTES - 1  # "less than 800 KBytes"
    max_messages = wire.MAX_BATCH_COMMANDS
    max_request_bytes = wire.MAX_REQUEST_BYTES
    overhead = 16  # {"commands":[]} around the commands

    def message(self, event: StoredEvent, body: dict[str, Any]) -> dict[str, Any]:
        native = isinstance((body.get("context") or {}).get("bloomreach"), dict)
        if not native and event.type in _NO_COMMAND:
            raise ValueError(_NO_COMMAND[event.type])
        return wire.encode(body)

    def check(self, message: dict[str, Any], receipt: Receipt) -> None:
        wire.decode(message, receipt)

    def url(self, destination: Destination) -> str:
        return url_under(destination, f"/track/v2/projects/{quote(destination.key or '', safe='')}/batch")

    def headers(self, destination: Destination) -> dict[str, str]:
        key = destination.key or ""
        auth = basic_auth(key, destination.secret) if destination.secret else f"Token {key}"
        return json_headers(destination, Authorization=auth)

    def join(self, messages: list[bytes]) -> bytes:
        return b'{"commands":[' + b",".join(messages) + b"]}"

    def refused(self, request: OutgoingRequest, response: Answer) -> dict[int, str]:
        """The commands whose result says ``success: false``, with their errors."""
        try:
            results: Any = msgspec.json.decode(response.content).get("results")
        except (msgspec.DecodeError, AttributeError):
            results = None
        if not isinstance(results, list) or len(results) != len(request.events):
            why = f"a {response.status_code} answer without one result per command: {response.text[:200]}"
            return dict.fromkeys(range(len(request.events)), why)
        return {
            index: f"Bloomreach refused the command: {_errors(result)}"
            for index, result in enumerate(results)
            if not (isinstance(result, dict) and result.get("success") is True)
        }


def _errors(result: Any) -> str:
    errors = result.get("errors") if isinstance(result, dict) else result
    return msgspec.json.encode(errors).decode()

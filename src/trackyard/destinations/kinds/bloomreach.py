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

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from trackyard.destinations.kinds.base import (
    Kind,
    Outgoing,
    OutgoingRequest,
    Skipped,
    Unsendable,
    basic_auth,
    check_receipt,
    chunks,
    decoded,
    json_headers,
    url_under,
)
from trackyard.errors import CallError
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import bloomreach as wire

#: ``{"commands":[]}`` around the commands.
_ENVELOPE_BYTES = 16
#: Spec types with no Bloomreach command (it has customers and their events, no accounts).
_NO_COMMAND = {
    "alias": "an alias call has no Bloomreach command (Bloomreach merges customers by their ids)",
    "group": "a group call has no Bloomreach command (Bloomreach has no accounts or groups)",
}
_encoder = msgspec.json.Encoder()


class Bloomreach(Kind):
    name = wire.FORMAT

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        receipt = check_receipt()
        commands: list[tuple[StoredEvent, bytes]] = []
        for event in events:
            body = decoded(event)
            native = isinstance((body.get("context") or {}).get("bloomreach"), dict)
            if not native and event.type in _NO_COMMAND:
                yield Skipped(event, _NO_COMMAND[event.type])
                continue
            command = wire.encode(body)
            try:  # what a receiver would refuse in its answer, known before sending
                wire.decode(command, receipt)
            except CallError as error:
                yield Skipped(event, f"not a valid Bloomreach command: {error.message}")
                continue
            encoded = _encoder.encode(command)
            if len(encoded) >= wire.MAX_COMMAND_BYTES:
                yield Unsendable(event, f"a Bloomreach command of {len(encoded)} bytes, over 800 KB")
                continue
            commands.append((event, encoded))
        path = f"/track/v2/projects/{quote(destination.key or '', safe='')}/batch"
        url = url_under(destination, path)
        headers = json_headers(destination, Authorization=_authorization(destination))
        for chunk in chunks(commands, wire.MAX_BATCH_COMMANDS, wire.MAX_REQUEST_BYTES, _ENVELOPE_BYTES):
            joined = b'{"commands":[' + b",".join(encoded for _, encoded in chunk) + b"]}"
            yield OutgoingRequest(url, joined, headers, [event for event, _ in chunk])

    def refused(self, request: OutgoingRequest, response: httpx.Response) -> dict[int, str]:
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


def _authorization(destination: Destination) -> str:
    key = destination.key or ""
    return basic_auth(key, destination.secret) if destination.secret else f"Token {key}"

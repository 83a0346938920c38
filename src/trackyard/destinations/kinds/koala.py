"""``koala``: the canonical event encoded back into Koala's server-side batch API.

Requests go to ``--url`` + ``/web/projects/{key}/batch`` (a person) or
``.../accounts/batch`` (an account), the public project key in the path as Koala's SDK sends
it, with no auth header and no compression (Koala documents none). The events of one person
in a batch read from the log share a request (in their order), up to Koala's 30 entries a
list; a request over 500 KB is split in halves, and an event over 500 KB alone is
dead-lettered. Requests of different people may be in flight at once
(``trackyard.destinations.inflight``), never two that share a person's name. Every entry
carries the event's ``messageId`` as ``message_id``, so a receiver that dedups (Koala,
trackyard) stores a redelivered event once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import quote

import msgspec

from trackyard.config import MAX_REQUEST_BYTES
from trackyard.destinations.kinds.base import (
    Kind,
    Outgoing,
    OutgoingRequest,
    Skipped,
    Unsendable,
    decoded,
    json_headers,
    url_under,
)
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire import koala as wire
from trackyard.wire._koala_typed import entry_of_stored

_encoder = msgspec.json.Encoder()


class Koala(Kind):
    name = wire.FORMAT
    # Koala takes one person a request, and a person's events share a request only within one
    # read of the log: with many people, a larger read is fewer, fuller requests.
    read_batch = 10_000

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        entries: list[tuple[StoredEvent, wire.Entry]] = []
        for event in events:
            entry = entry_of_stored(event.body)  # most events; the others by the reference path
            if entry is None:
                try:
                    entry = wire.entry_of(decoded(event), carry_message_id=True)
                except ValueError as why:
                    yield Skipped(event, str(why))
                    continue
            entries.append((event, entry))
        # The batch's requests share a URL per level and one headers dict (never changed).
        urls = {path: _url(destination, path) for path in ("/batch", "/accounts/batch")}
        headers = json_headers(destination)
        for request, tagged in wire.group(entries, by_person=True):
            body = _encoder.encode(request.body)
            if len(body) <= MAX_REQUEST_BYTES:
                yield OutgoingRequest(urls[request.path], body, headers, tagged, _people(request))
            elif len(tagged) == 1:
                yield Unsendable(tagged[0], f"a Koala request of {len(body)} bytes, over 500 KB")
            else:  # in halves, until each part fits or is one event
                half = len(tagged) // 2
                yield from self.requests(destination, tagged[:half])
                yield from self.requests(destination, tagged[half:])


def _url(destination: Destination, path: str) -> str:
    """Where a request of ``path`` (``KoalaRequest.path``) goes: the key in the path, as Koala's SDK."""
    return url_under(destination, f"/web/projects/{quote(destination.key or '', safe='')}{path}")


#: The fields of a request's head that name its person (or account).
_NAMES = ("profile_id", "email", "account_id", "domain")


def _people(request: wire.KoalaRequest) -> frozenset[str]:
    """Who a request is for, by each of its names: two requests that share a name (a person's
    email with and without a profile_id) are never in flight at once."""
    return frozenset(f"{name}:{request.body[name]}" for name in _NAMES if name in request.body)

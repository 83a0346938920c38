"""What every destination kind is: events in, HTTP requests out, and an answer read per event.

A kind turns a batch of stored events into :class:`OutgoingRequest` objects within its
receiver's limits, says which events it cannot carry at all (:class:`Unsendable`, dead
letters: too large for any receiver of that API) or cannot express (:class:`Skipped`,
recorded with why: a ``screen`` call to Vitally), and reads a 2xx answer for events it
refuses one by one (Bloomreach's per-command results). Sending, status classes, retries
and dead letters are the same for every kind (``trackyard.destinations.delivery``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from trackyard.errors import CallError
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination
from trackyard.wire.base import Receipt

if TYPE_CHECKING:  # an HTTP worker checks destinations without sending: no httpx, no pycurl
    from trackyard.destinations.transport import Answer


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    events: Sequence[StoredEvent] = field(repr=False)
    #: The people the request is for, when it is for a few (``trackyard.destinations.inflight``):
    #: requests of different people may be in flight at once. Empty: one at a time, in order.
    people: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Unsendable:
    """An event the kind cannot carry at all (too large): dead-lettered without a request."""

    event: StoredEvent
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event the target format cannot express: not sent, not a failure, recorded with why.

    ``reason`` names the case, not the event (the skips are counted by it)."""

    event: StoredEvent
    reason: str


Outgoing = OutgoingRequest | Unsendable | Skipped


class Kind:
    """One destination kind. Subclasses build the requests; most take a 2xx as delivered whole."""

    name: str
    #: Events read from the log at once, at least (beside the destination's batch size).
    read_batch: int = 100

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        raise NotImplementedError

    def refused(self, request: OutgoingRequest, response: Answer) -> dict[int, str]:
        """For a 2xx answer: the events of ``request`` (by index) the answer says failed, with why."""
        return {}


T = TypeVar("T")


def chunks(
    items: Iterable[tuple[T, bytes]], max_count: int, max_bytes: int, overhead: int
) -> Iterator[list[tuple[T, bytes]]]:
    """Items (each with its encoded bytes) in order, grouped so that a group has at most
    ``max_count`` items and its items plus one separator each plus ``overhead`` stay within
    ``max_bytes``. An item too large alone is the caller's to refuse beforehand."""
    chunk: list[tuple[T, bytes]] = []
    size = overhead
    for item in items:
        if chunk and (size + len(item[1]) + 1 > max_bytes or len(chunk) >= max_count):
            yield chunk
            chunk, size = [], overhead
        chunk.append(item)
        size += len(item[1]) + 1
    if chunk:
        yield chunk


def json_headers(destination: Destination, **more: str) -> dict[str, str]:
    """``Content-Type: application/json``, the kind's own headers, then the destination's."""
    return {"Content-Type": "application/json", **more, **dict(destination.headers)}


def check_receipt() -> Receipt:
    """A receipt for running a receiver's own decoder on what a kind is about to send: the
    events a trackyard receiver would refuse are known before a request is made."""
    return Receipt(route="", received_at_us=int(time.time() * 1_000_000), source_tag={})


def basic_auth(user: str, password: str = "") -> str:
    """``Authorization: Basic`` for ``user:password``, as HTTP clients send it."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def url_under(destination: Destination, path: str) -> str:
    return destination.url.rstrip("/") + path


_encoder = msgspec.json.Encoder()


def decoded(event: StoredEvent) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(event.body)
    return body


class MessageKind(Kind):
    """A kind that sends each event as one message of its format, the messages of a request
    joined into one body. Each message is checked with the receiving format's own decoder
    first: what a receiver would refuse is skipped, with the rule it breaks as the reason."""

    #: What a message is called in reasons ("Vitally message").
    message_name: str
    #: A message is at most this many bytes of JSON (a larger one is dead-lettered).
    max_message_bytes: int
    #: A request holds at most this many messages and bytes; ``overhead`` is its envelope's.
    max_messages: int
    max_request_bytes: int
    overhead: int

    def message(self, event: StoredEvent, body: dict[str, Any]) -> dict[str, Any]:
        """The event's message; a ``ValueError`` says why the format cannot express it."""
        raise NotImplementedError

    def check(self, message: dict[str, Any], receipt: Receipt) -> None:
        """Raise ``CallError`` (the receiver's words) when a receiver would refuse ``message``."""
        raise NotImplementedError

    def url(self, destination: Destination) -> str:
        raise NotImplementedError

    def headers(self, destination: Destination) -> dict[str, str]:
        raise NotImplementedError

    def join(self, messages: list[bytes]) -> bytes:
        raise NotImplementedError

    def requests(self, destination: Destination, events: Sequence[StoredEvent]) -> Iterator[Outgoing]:
        receipt = check_receipt()
        messages: list[tuple[StoredEvent, bytes]] = []
        for event in events:
            try:
                message = self.message(event, decoded(event))
            except ValueError as why:
                yield Skipped(event, str(why))
                continue
            try:
                self.check(message, receipt)
            except CallError as error:
                yield Skipped(event, f"not a valid {self.message_name}: {error.message}")
                continue
            encoded = _encoder.encode(message)
            if len(encoded) > self.max_message_bytes:
                yield Unsendable(
                    event, f"a {self.message_name} of {len(encoded):,} bytes, over {self.max_message_bytes:,}"
                )
                continue
            messages.append((event, encoded))
        url, headers = self.url(destination), self.headers(destination)
        for chunk in chunks(messages, self.max_messages, self.max_request_bytes, self.overhead):
            yield OutgoingRequest(url, self.join([m for _, m in chunk]), headers, [e for e, _ in chunk])

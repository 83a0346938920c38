"""The live debugger's stream: the log and the rejects, tailed from a cursor, as Server-Sent Events.

Each open debugger follows the log itself (``EventLog.read_events`` after a seq, in a
thread), so nothing is copied per client and the ingest path does no work for it: the
writer never knows a debugger is open. What one client costs is bounded: a read of at most
:data:`SCAN_MAX` events every :data:`TICK_SECONDS`, and at most :data:`SEND_MAX` of them
sent. When more arrive than that (over 200 events/s; at 1,000/s it always does), the stream
samples: it jumps ahead to the newest events, sends the newest matches, and says how many
it left out. A stream without filters reads only the :data:`SEND_MAX` newest, since it
would send no other.
The number of streams a process serves at once is bounded too (:data:`MAX_STREAMS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool

from trackyard.storage.base import NO_SOURCE, EventLog, RejectStore, Source, StoredEvent, StoredReject

#: How often a stream looks at the log: events show within a second of their acknowledgement.
TICK_SECONDS: Final = 0.25
#: The most events one tick reads; further behind than this, the stream jumps ahead (samples).
SCAN_MAX: Final = 1_000
#: The most events one tick sends to the page (so at most 200 a second reach a browser).
SEND_MAX: Final = 50
#: The most rejects one tick sends.
REJECTS_MAX: Final = 50
#: What a new stream shows first: the newest events and rejects already stored.
BACKLOG: Final = 50
#: Streams one process serves at once; more are refused with 503.
MAX_STREAMS: Final = 8
#: A stream ends after this long and the browser reconnects at once with ``Last-Event-ID``,
#: going on where it was. So a stopping server (which waits for open requests) never waits
#: on a debugger for longer than this, and a stream held open by a vanished client ends too.
STREAM_SECONDS: Final = 5.0
#: How soon the browser reconnects (the SSE ``retry`` field).
_RETRY_MS: Final = 250
#: The most of a reject's body sent to the page.
_REJECT_BODY_MAX: Final = 4_096

#: What the page calls the source of a request refused for its credentials.
_NO_SOURCE: Final = "(no source: wrong key)"

_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Filters:
    """What the page asked to see; empty fields match everything."""

    source: str = ""
    format: str = ""
    type: str = ""
    event: str = ""
    user: str = ""

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        fields = ("source", "format", "type", "event", "user")
        return cls(*(str(query.get(name, "")).strip() for name in fields))

    def needs_body(self) -> bool:
        """Whether matching needs the decoded event (source and type are filtered by the read)."""
        return bool(self.format or self.event or self.user)

    def matches(self, item: dict[str, Any]) -> bool:
        if self.format and item["format"] != self.format:
            return False
        if self.event and self.event.lower() not in (item["event"] or "").lower():
            return False
        return not self.user or self.user in (item["user_id"], item["anonymous_id"])


def describe(event: StoredEvent, source_names: dict[int, str]) -> dict[str, Any]:
    """What the page shows of a stored event: the columns, the request it came in, the raw JSON.

    The request is what the stored event keeps of it: ``source.route`` and ``source.format``
    (trackyard's), ``context.ip`` (Segment's) and ``context.userAgent`` when the SDK sent one.
    """
    body = _decode.decode(event.body)
    tag, context = _object(body.get("source")), _object(body.get("context"))
    library = _object(context.get("library"))
    return {
        "kind": "event",
        "seq": event.seq,
        "source": tag.get("name") or source_names.get(event.source_id, str(event.source_id)),
        "format": tag.get("format", ""),
        "route": tag.get("route", ""),
        "type": event.type,
        "event": body.get("event") or body.get("name"),
        "user_id": body.get("userId"),
        "anonymous_id": body.get("anonymousId"),
        "message_id": body.get("messageId"),
        "received_at": body.get("receivedAt"),
        "ip": context.get("ip"),
        "user_agent": context.get("userAgent"),
        "library": " ".join(str(library[k]) for k in ("name", "version") if k in library) or None,
        "raw": event.body.decode(),
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def describe_reject(reject: StoredReject, source_names: dict[int, str]) -> dict[str, Any]:
    body = reject.body[:_REJECT_BODY_MAX].decode(errors="replace")
    return {
        "kind": "reject",
        "seq": reject.seq,
        "source": _NO_SOURCE
        if reject.source_id == NO_SOURCE
        else source_names.get(reject.source_id, str(reject.source_id)),
        "route": reject.route,
        "code": reject.code,
        "message": reject.message,
        "index": reject.index,
        "received_at_ms": reject.received_at_ms,
        "raw": body + ("…" if len(reject.body) > _REJECT_BODY_MAX else ""),
    }


def rejects_head(rejects: RejectStore) -> int:
    """The newest reject's seq, found with O(log n) one-row reads (the protocol has no head)."""
    if not rejects.read_rejects(after=0, limit=1):
        return 0
    low, high = 0, 1  # invariant: a reject after ``low`` exists
    while rejects.read_rejects(after=high, limit=1):
        low, high = high, high * 2
    while high - low > 1:  # none after ``high``: the head is in (low, high]
        middle = (low + high) // 2
        if rejects.read_rejects(after=middle, limit=1):
            low = middle
        else:
            high = middle
    return high


@dataclass(slots=True)
class _Cursor:
    events: int
    rejects: int


class LiveTail:
    """Streams for the debugger pages of one process (see the module docstring)."""

    def __init__(self, log: EventLog, rejects: RejectStore, sources: Callable[[], list[Source]]) -> None:
        self._log = log
        self._rejects = rejects
        self._sources = sources
        self.open_streams = 0

    def full(self) -> bool:
        return self.open_streams >= MAX_STREAMS

    def _start(self, resume: str | None) -> _Cursor:
        """Where a stream starts: after ``Last-Event-ID`` (``EVENTS:REJECTS``), or a backlog back."""
        if resume:
            events, _, rejects = resume.partition(":")
            if events.isdigit() and rejects.isdigit():
                return _Cursor(int(events), int(rejects))
        return _Cursor(
            max(self._log.head_seq() - BACKLOG, 0), max(rejects_head(self._rejects) - BACKLOG // 5, 0)
        )

    def _tick(self, cursor: _Cursor, filters: Filters) -> dict[str, Any]:
        """One look at the log and the rejects (runs in a thread: these are blocking reads)."""
        names = {s.id: s.name for s in self._sources()}
        source_id = next((i for i, name in names.items() if name == filters.source), None)
        if filters.source and source_id is None:
            return {"error": f"No source named {filters.source!r}."}
        head = self._log.head_seq()
        # Without filters every event read is one sent: read no more than a tick sends.
        window = SEND_MAX if source_id is None and not filters.type and not filters.needs_body() else SCAN_MAX
        skipped = 0
        if head - cursor.events > window:  # too far behind to read it all: sample the newest
            skipped = head - window - cursor.events
            cursor.events = head - window
        rows = self._log.read_events(cursor.events, SCAN_MAX, source_id, filters.type or None)
        scanned = len(rows)
        if rows:
            cursor.events = rows[-1].seq
        # Newest first, and only until SEND_MAX match: a flood costs SEND_MAX decodes a tick,
        # not one per event (what is not looked at is counted as left out).
        matched: list[dict[str, Any]] = []
        looked = 0
        for row in reversed(rows):
            if len(matched) == SEND_MAX:
                break
            looked += 1
            item = describe(row, names)
            if not filters.needs_body() or filters.matches(item):
                matched.append(item)
        matched.reverse()
        dropped = scanned - looked
        found = self._rejects.read_rejects(cursor.rejects, REJECTS_MAX, source_id)
        if found:
            cursor.rejects = found[-1].seq
        return {
            "events": matched,
            "rejects": [describe_reject(r, names) for r in found],
            "status": {
                "head": head,
                "scanned": scanned,
                "sent": len(matched),
                "left_out": skipped + dropped,
                "sampling": bool(skipped or dropped),
            },
        }

    async def stream(self, resume: str | None, filters: Filters) -> AsyncIterator[bytes]:
        """The SSE body: ``event: batch`` messages (events, rejects and a status) as they come."""
        self.open_streams += 1
        try:
            cursor = await run_in_threadpool(self._start, resume)
            yield f"retry: {_RETRY_MS}\n\n".encode()
            ends = time.monotonic() + STREAM_SECONDS
            sampling = False
            while time.monotonic() < ends:
                tick = await run_in_threadpool(self._tick, cursor, filters)
                if "error" in tick:
                    yield b"event: problem\ndata: " + _encode.encode({"message": tick["error"]}) + b"\n\n"
                    return
                status = tick["status"]
                if tick["events"] or tick["rejects"] or status["sampling"] != sampling:
                    sampling = status["sampling"]
                    ident = f"{cursor.events}:{cursor.rejects}".encode()
                    yield b"id: " + ident + b"\nevent: batch\ndata: " + _encode.encode(tick) + b"\n\n"
                await asyncio.sleep(TICK_SECONDS)
            # Where to go on from, even when nothing came: the reconnection resumes here.
            yield f"id: {cursor.events}:{cursor.rejects}\n\n".encode()
        finally:
            self.open_streams -= 1

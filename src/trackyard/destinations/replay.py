"""Replay: re-send a destination's dead letters, or the log from a seq or a time.

It runs in the caller's process (the CLI's, or the server's for the admin API), beside
the destination's own process, which goes on at its cursor. Receivers that dedup by
``messageId`` store each replayed event once.

``since``: the first seq whose ``receivedAt`` is at or after the time, found by binary
search on seq. ``receivedAt`` is stamped when a request arrives and the log appends in
arrival order, so it grows with seq (up to the milliseconds two requests in flight at
once may overlap, which can only make the replay start a few events early). About
log2(head) one-event reads; no index needed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trackyard.consumers.runner import StopFlag
from trackyard.destinations.consumer import open_sink
from trackyard.destinations.status import REPLAYED, outstanding, received_at_ms
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import Destination, DestinationRegistry
from trackyard.storage.factory import Backends

_CHUNK = 500
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class BadTime(ValueError):
    pass


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """ISO-8601 (``2026-12-01T10:00:00Z``, a date alone, UTC without an offset) or relative
    to now (``90s``, ``30m``, ``2h``, ``1d``, ``1w``)."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if found := _RELATIVE.match(text):
        return now - timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(
            f"{value!r} is neither ISO-8601 (2026-12-01T10:00:00Z) nor relative (30m, 2h, 1d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def first_seq_since(backends: Backends, moment: datetime) -> int:
    """The first seq whose ``receivedAt`` ≥ ``moment`` (head + 1 when none): binary search."""
    target = int(moment.timestamp() * 1000)
    low, high = 1, backends.log.head_seq() + 1  # the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        found = backends.log.read_events(after=middle - 1, limit=1)
        if not found:
            high = middle
            continue
        received = received_at_ms(found[0].body)
        if received is not None and received >= target:
            high = middle  # seqs between middle and found[0].seq do not exist
        else:
            low = found[0].seq + 1
    return low


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    delivered: int
    dead: int
    seconds: float

    @property
    def filtered(self) -> int:
        return self.total - self.delivered - self.dead


@dataclass(frozen=True, slots=True)
class Plan:
    """What a replay will send: ``total`` events, in batches."""

    total: int
    batches: Iterator[list[StoredEvent]]


def plan_dead(backends: Backends, destination: Destination) -> Plan:
    """The dead letters not replayed yet, noted as replayed first (what fails again comes after)."""
    letters = outstanding(backends, destination)
    if letters:
        backends.cursors().commit(destination.consumer + REPLAYED, letters[-1].id)
    events = [StoredEvent(x.seq, x.source_id, x.type, x.body) for x in letters]
    return Plan(len(events), iter([events[i : i + _CHUNK] for i in range(0, len(events), _CHUNK)]))


def plan_after(backends: Backends, after: int) -> Plan:
    """Every event after ``after`` up to the log's head now."""
    head = backends.log.head_seq()
    return Plan(max(head - after, 0), _log_batches(backends, after, head))


def _log_batches(backends: Backends, after: int, head: int) -> Iterator[list[StoredEvent]]:
    while after < head:
        batch = [e for e in backends.log.read_events(after=after, limit=_CHUNK) if e.seq <= head]
        if not batch:
            return
        yield batch
        after = batch[-1].seq


def run(
    backends: Backends,
    registry: DestinationRegistry,
    destination: Destination,
    plan: Plan,
    progress: Callable[[int], None] = lambda sent: None,
) -> Summary:
    """Send the plan's batches to ``destination`` now; ``progress`` hears each batch's size."""
    started = time.monotonic()
    sink = open_sink(backends, registry, destination, StopFlag())
    delivered = dead = 0
    try:
        for batch in plan.batches:
            ok, bad = sink.send_now(batch)
            delivered, dead = delivered + ok, dead + bad
            progress(len(batch))
    finally:
        sink.close()
    return Summary(plan.total, delivered, dead, time.monotonic() - started)

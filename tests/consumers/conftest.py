"""Fixtures for the consumer framework: a real log on SQLite, and sinks that record what they got."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.storage.base import EventRecord, StoredEvent
from trackyard.storage.factory import Backends, open_backends


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(Settings(data_dir=tmp_path / "data"), writer=True)
    yield opened
    opened.close()


def append(backends: Backends, bodies: Sequence[bytes]) -> None:
    """Append events to the real log (one per body), as the collectors do."""
    now = int(time.time() * 1000)
    start = backends.log.head_seq()
    records = [EventRecord(1, f"m{start + i}", "track", now, body) for i, body in enumerate(bodies)]
    asyncio.run(backends.log.append(records, []))


class RecordingSink:
    """A sink that keeps what it was handed, in memory, failing on request.

    ``fails(events)`` says whether a delivery fails; a failed delivery keeps nothing (all
    or none, as a transaction). With ``own_cursor`` it keeps its position itself, like the
    profile store does.
    """

    def __init__(
        self, fails: Callable[[Sequence[StoredEvent]], bool] = lambda _: False, own_cursor: bool = False
    ):
        self.fails = fails
        self.own_cursor = own_cursor
        self.delivered: list[int] = []
        self.batches: list[list[int]] = []
        self.calls = 0
        self._position = 0
        self.lock = threading.Lock()

    def position(self) -> int | None:
        return self._position if self.own_cursor else None

    def before_read(self) -> None:
        pass

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        with self.lock:
            self.calls += 1
            if self.fails(events):
                raise ValueError(f"cannot deliver seq {events[0].seq}")
            fresh = [e.seq for e in events if not self.own_cursor or e.seq > self._position]
            self.delivered += fresh
            self.batches.append(fresh)
            if self.own_cursor and fresh:
                self._position = fresh[-1]

    def advance(self, seq: int) -> None:
        if self.own_cursor:
            self._position = max(self._position, seq)

    def close(self) -> None:
        pass

"""The JetStream log's :class:`~trackyard.storage.base.LogMaintenance`: retention by purging
the stream below a seq, decided by ``trackyard.retention`` like every other log's.

**Parts.** A stream has no blocks of trackyard's: its parts are ranges of seqs, the oldest
``_PART_EVENTS`` events at a time (never the newest), and dropping one is a single purge request (JetStream's
purge with ``seq``: every message below it goes at once, never one by one). Its age is the
time JetStream stored its newest message, which is when the collector received it (within
the publish's round trip).

**Compaction** does not apply: the stream's own file store keeps the messages (and
compresses them if the stream is configured with ``compression: s2``). ``compact`` moves
nothing, so the policy goes straight to dropping ranges.

**The rest** (rejects, the dedup index, profiles, consumers' stores) lives in the state
backend: its maintenance (SQLite's or PostgreSQL's) prunes the rejects, returns their space
where it can, and reports its files or tables.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.js import api

from trackyard.storage.base import LogExtent, LogMaintenance, LogPart
from trackyard.storage.nats._bridge import Bridge
from trackyard.storage.nats._url import JetStreamOptions
from trackyard.storage.nats.log import connect, retrying

#: Events in a part: the most a drop removes past what the policy asked (a size limit).
_PART_EVENTS = 10_000
#: Seconds any one request here may take, its retries included.
_TIMEOUT = 45.0

T = TypeVar("T")


class JetStreamMaintenance:
    def __init__(self, options: JetStreamOptions, state: LogMaintenance | None) -> None:
        self._options = options
        #: The state backend's maintenance, for what it keeps (rejects, dedup, profiles ...).
        self._state = state
        self._bridge = Bridge()
        try:
            self._nc: Client = self._bridge.call(connect(options), _TIMEOUT)
        except BaseException:
            self._bridge.stop()
            raise
        self._js = self._nc.jetstream(timeout=5.0)

    def close(self) -> None:
        try:
            self._call(self._nc.close())
        finally:
            self._bridge.stop()
            if self._state is not None:
                self._state.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._bridge.call(coro, _TIMEOUT)

    def _info(self) -> api.StreamState:
        info = self._call(retrying(lambda: self._js.stream_info(self._options.stream)))
        state: api.StreamState = info.state
        return state

    def _stored_ms(self, seq: int) -> int:
        """When JetStream stored the message at ``seq`` (epoch ms)."""
        msg = self._call(retrying(lambda: self._js.get_msg(self._options.stream, seq)))
        if msg.time is None:  # a server that does not say: as new as can be, never dropped for age
            return int(time.time() * 1000)
        return int(msg.time.timestamp() * 1000)

    # -- compaction: the stream's own ---------------------------------------------------

    def compact(self, force: bool = False, received_before_ms: int | None = None) -> int:
        return 0

    def oldest_hot_received_ms(self) -> int | None:
        return None  # nothing waits for a compaction

    # -- retention ------------------------------------------------------------------------

    def oldest_part(self) -> LogPart | None:
        state = self._info()
        if state.messages < 2:
            return None
        first = state.first_seq
        # The newest event always stays (as on SQLite, where it is never compacted).
        last = min(first + _PART_EVENTS - 1, state.last_seq - 1)
        # Seqs are dense between first and last (only purges remove messages): share the bytes.
        stored = state.bytes * (last - first + 1) // state.messages
        return LogPart(first, last, self._stored_ms(last), stored)

    def drop(self, part: LogPart) -> None:
        # Everything below the seq goes; a repeated purge (after a crash) removes nothing more.
        self._call(retrying(lambda: self._js.purge_stream(self._options.stream, seq=part.last_seq + 1)))

    def prune_rejects(self, before_ms: int) -> int:
        return 0 if self._state is None else self._state.prune_rejects(before_ms)

    def reclaim(self) -> int:
        # JetStream removes purged message blocks itself; the state may have space to return.
        return 0 if self._state is None else self._state.reclaim()

    def checkpoint(self) -> int:
        return 0 if self._state is None else self._state.checkpoint()

    def returns_space(self) -> bool:
        return self._state is None or self._state.returns_space()

    def vacuum(self) -> None:
        if self._state is not None:
            self._state.vacuum()

    # -- what there is ---------------------------------------------------------------------

    def extent(self) -> LogExtent:
        state = self._info()
        oldest_ms = self._stored_ms(state.first_seq) if state.messages else None
        return LogExtent(
            events=state.messages,
            compacted_events=0,
            blocks=0,
            oldest_seq=state.first_seq if state.messages else 0,
            oldest_received_ms=oldest_ms,
            head_seq=state.last_seq,
            # The stream keeps each event's JSON with its subject and headers, uncompressed:
            # its bytes stand for both.
            json_bytes=state.bytes,
            stored_bytes=state.bytes,
        )

    def disk_usage(self) -> dict[str, int]:
        usage = {} if self._state is None else self._state.disk_usage()
        # On each replica's disk: the stream's bytes, R times over the cluster.
        usage["log"] = self._info().bytes
        return usage

"""The event log on a NATS JetStream stream: collectors publish, consumers read by seq.

**Appending.** :meth:`JetStreamLog.append` drops the events the injected long-window
:class:`~trackyard.storage.base.DedupIndex` (in the state backend) has seen, publishes each
other one with ``Nats-Msg-Id`` = ``<source id>:<messageId>`` to the subject
``trackyard.<stream>.<source id>.<type>``, and awaits every publish ack, all at once (the
first tries pipelined on one reply subscription, in order; a retry is a request of its own). Only
then are the keys remembered in the index and the request's rejects stored (in the
state), and the request answered. A publish whose ack does not come (a node died, the
stream is electing a leader) is sent again with the same id until ``ack_timeout``:
JetStream drops a second copy inside its ``duplicate_window``, so a retry never stores an
event twice. Past ``ack_timeout`` the append raises ``StoreUnavailable`` (the client gets
503 and retries), rather than hang while there is no quorum.

**What an ack promises.** On R1 the one server has written the event to its store file;
on R3 a quorum (two of three) has. The file is flushed to the OS at once and fsync'd every
``sync_interval`` of the *server's* configuration (2 minutes by default; ``always`` syncs
every write), so R3 on separate hosts is what makes an ack survive a power loss.

**Seqs.** The stream seq is the log seq: dense, since a deduplicated publish takes no seq
(a stream that expires events by ``max_age`` starts later, never has holes inside).

**Reading.** :meth:`read_events` reads through a short-lived pull consumer that starts at
``after + 1`` (filtered by subject for a source or a type, acks off), kept while the
reader goes on where it left off. Consumers keep their cursors in the state backend, as
with SQLite, so a consumer sees an event twice only if the same event was stored twice:
that happens only when a collector died between a publish and remembering its key *and*
the client's retry came after JetStream's window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from trackyard.errors import Overloaded, StoreUnavailable
from trackyard.storage.base import (
    AppendResult,
    DedupIndex,
    EventRecord,
    RejectRecord,
    StoredEvent,
    dedup_key,
)
from trackyard.storage.nats._acks import AckInbox
from trackyard.storage.nats._bridge import Bridge
from trackyard.storage.nats._url import JetStreamOptions

log = logging.getLogger("trackyard.storage")

T = TypeVar("T")

#: Seconds one publish waits for its ack before it is sent again.
_PUBLISH_TIMEOUT = 2.0
#: Seconds to reach a first server of the URL at start-up.
_CONNECT_SECONDS = 5.0
#: Seconds a management request (stream info, creating the stream) waits for its answer.
_REQUEST_TIMEOUT = 5.0
#: Seconds a reader's request (making its consumer, its info, a fetch of known events) waits:
#: short, since the usual cause of no answer is a lost node, and the retry goes elsewhere.
_READ_TIMEOUT = 1.0
#: Seconds the log retries what a lost node or a leader election interrupts: opening (the
#: stream may be electing a leader), reads and ``head_seq``. Past it they raise
#: ``StoreUnavailable``; a consumer's process then exits and its supervisor restarts it.
_RETRY_SECONDS = 30.0
#: Publishes in flight at once per append: bounded, so one large batch cannot flood a node.
_IN_FLIGHT = 256
#: Errors after which a publish is retried: the message may or may not be stored.
_RETRY = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
)


class RejectWriter(Protocol):
    """Where the rejects of a request go: the state backend's store."""

    def add_rejects(self, rejects: Sequence[RejectRecord]) -> Awaitable[None]: ...


class _Reader:
    """A pull consumer that starts after some seq and the seq it has read up to."""

    __slots__ = ("filter", "next_after", "sub")

    def __init__(self, sub: JetStreamContext.PullSubscription, filter: str, after: int) -> None:
        self.sub = sub
        self.filter = filter
        self.next_after = after


class JetStreamLog:
    """An :class:`~trackyard.storage.base.EventLog` on a JetStream stream (created if missing)."""

    def __init__(
        self,
        options: JetStreamOptions,
        dedup: DedupIndex,
        rejects: RejectWriter,
        *,
        writer: bool,
        max_pending_events: int,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.options = options
        self._dedup = dedup
        self._rejects = rejects
        self._writer = writer
        self._max_pending = max_pending_events
        self._on_close = on_close
        self._types = ("identify", "track", "page", "screen", "group", "alias")
        self._prefix = options.subject_prefix
        self._pending = 0
        self._commits = 0
        self._written = 0
        self._reader: _Reader | None = None
        self._closed = False
        self._bridge = Bridge()
        self._acks: AckInbox
        try:
            self._nc, self._js = self._bridge.call(self._connect(), _RETRY_SECONDS + _REQUEST_TIMEOUT)
            self._reads = self._nc.jetstream(timeout=_READ_TIMEOUT)
        except BaseException as exc:
            self._bridge.stop()
            if isinstance(exc, Exception):
                why = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                raise StoreUnavailable(
                    f"cannot reach JetStream at {options.hosts} ({why}); check that nats-server runs"
                    " with -js and that TRACKYARD_LOG lists its client ports"
                ) from None
            raise

    # -- connection and stream ------------------------------------------------------

    async def _connect(self) -> tuple[Client, JetStreamContext]:
        nc = await connect(self.options)
        js = nc.jetstream(timeout=_REQUEST_TIMEOUT)
        try:
            await retrying(lambda: self._ensure_stream(js))
            self._acks = AckInbox(nc)
            await self._acks.start()
        except BaseException:
            await nc.close()
            raise
        return nc, js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        options = self.options
        try:
            await js.stream_info(options.stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = api.StreamConfig(
            name=options.stream,
            subjects=[f"{self._prefix}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=options.replicas,
            duplicate_window=options.duplicate_window,
            max_age=options.max_age or None,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # Another collector created it first (with other settings, or a race on the name).
            await js.stream_info(options.stream)

    # -- the log --------------------------------------------------------------------

    async def append(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        if not self._writer:
            raise StoreUnavailable("this log was opened read-only")
        size = len(events) + len(rejects)
        if self._pending and self._pending + size > self._max_pending:
            raise Overloaded(f"{self._pending} events are waiting for publish acks")
        self._pending += size
        try:
            return await self._append(events, rejects)
        finally:
            self._pending -= size

    async def _append(self, events: Sequence[EventRecord], rejects: Sequence[RejectRecord]) -> AppendResult:
        keys = [dedup_key(e.source_id, e.message_id) for e in events]
        seen = await asyncio.to_thread(self._dedup.seen, set(keys)) if keys else set()
        fresh: list[tuple[EventRecord, int]] = []
        for event, key in zip(events, keys, strict=True):
            if key not in seen:
                seen.add(key)  # a messageId twice in one request is stored once
                fresh.append((event, key))
        stored = 0
        if fresh:
            stored = await self._bridge.run(self._publish_all([event for event, _ in fresh]))
            by_receipt: dict[int, list[int]] = defaultdict(list)
            for event, key in fresh:
                by_receipt[event.received_at_ms].append(key)
            try:
                # One write for the whole request.
                await asyncio.to_thread(self._dedup.remember_many, list(by_receipt.items()))
            except Exception as exc:
                # The events are in the stream: the client's retry is dropped there, by its ids.
                raise StoreUnavailable(f"the dedup index cannot write ({type(exc).__name__})") from None
        if rejects:
            await self._rejects.add_rejects(rejects)
        self._commits += 1
        self._written += stored
        return AppendResult(stored=stored, duplicates=len(events) - stored)

    async def _publish_all(self, events: list[EventRecord]) -> int:
        """On the bridge's loop: publish every event and wait for all acks; how many were new."""
        deadline = time.monotonic() + self.options.ack_timeout
        first = await self._pipelined(events, min(_PUBLISH_TIMEOUT, self.options.ack_timeout))
        if None not in first:  # every first try acked: nothing to retry
            return sum(1 for new in first if new)
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(event: EventRecord, acked: bool | None) -> bool:
            if acked is not None:
                return acked
            async with gate:
                return await self._publish(event, deadline, tried=True)

        outcomes = await asyncio.gather(
            *(one(event, acked) for event, acked in zip(events, first, strict=True)), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise StoreUnavailable(
                f"{len(failed)} of {len(events)} events got no JetStream ack within"
                f" {self.options.ack_timeout:g} s ({type(failed[0]).__name__}: {failed[0]});"
                " is a quorum of the NATS servers up?"
            )
        return sum(1 for new in outcomes if new)

    async def _pipelined(self, events: list[EventRecord], timeout: float) -> list[bool | None]:
        """The first try of every publish, pipelined on one reply subscription (no request,
        timer or future per event, which was most of a publish's CPU); per event whether it
        was new, or ``None`` when it got no ack (or an error) in ``timeout`` and
        :meth:`_publish` must try again. Sent in order, so the stream stores a request's
        events in order."""
        msg_id, stream = api.Header.MSG_ID.value, api.Header.EXPECTED_STREAM.value
        return await self._acks.publish(
            [
                (
                    f"{self._prefix}.{event.source_id}.{event.type}",
                    event.body,
                    {msg_id: f"{event.source_id}:{event.message_id}", stream: self.options.stream},
                )
                for event in events
            ],
            timeout,
        )

    async def _publish(self, event: EventRecord, deadline: float, *, tried: bool = False) -> bool:
        """Publish one event until acked; whether it is new (a retry whose first try was stored
        counts: ``tried`` says there was one)."""
        subject = f"{self._prefix}.{event.source_id}.{event.type}"
        msg_id = f"{event.source_id}:{event.message_id}"
        pause = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                ack = await self._js.publish(
                    subject,
                    event.body,
                    timeout=max(0.05, min(_PUBLISH_TIMEOUT, left)),
                    stream=self.options.stream,
                    headers={api.Header.MSG_ID.value: msg_id},
                )
                return tried or not ack.duplicate
            except _RETRY as exc:
                if time.monotonic() + pause >= deadline:
                    raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
                # The first try may have been stored without its ack reaching us.
                tried = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
            except nats.js.errors.APIError as exc:
                raise StoreUnavailable(f"JetStream refused the publish: {exc}") from None

    def copy_events(self, events: Sequence[StoredEvent], keys: Sequence[int]) -> None:
        """Append events copied from another log (``trackyard migrate``) at their own seqs.

        Each publish carries ``Nats-Expected-Last-Sequence: seq - 1``, so the stream takes it
        only right after its predecessor: an event lands at exactly the seq it had, or the
        copy stops with ``StoreUnavailable`` (run it again: it resumes after the stream's
        head). No ``Nats-Msg-Id``: the source may hold the same messageId twice (sent again
        after its long window), and both must keep their seqs. The events' dedup ``keys`` go
        into the long window as received now (as the PostgreSQL log's copy does), so a
        client's retry of an event sent before the move is caught.
        """
        if not events:
            return
        self._call(self._copy(events), self.options.ack_timeout + _RETRY_SECONDS)
        self._dedup.remember_many([(int(time.time() * 1000), list(dict.fromkeys(keys)))])

    async def _copy(self, events: Sequence[StoredEvent]) -> None:
        header = api.Header.EXPECTED_LAST_SEQUENCE.value
        # publish_async sends in order on one connection, so the stream sees seq order.
        pending = [
            await self._js.publish_async(
                f"{self._prefix}.{event.source_id}.{event.type}",
                event.body,
                stream=self.options.stream,
                headers={header: str(event.seq - 1)},
            )
            for event in events
        ]
        acks = await asyncio.wait_for(
            asyncio.gather(*pending, return_exceptions=True), self.options.ack_timeout + _RETRY_SECONDS
        )
        for event, ack in zip(events, acks, strict=True):
            if isinstance(ack, BaseException) or ack.seq != event.seq:
                why = ack if isinstance(ack, BaseException) else f"it got seq {ack.seq}"
                raise StoreUnavailable(
                    f"event {event.seq} could not be copied at its seq ({why}); run the migration"
                    " again to resume after the stream's head"
                )

    async def ping(self) -> None:
        if not self._writer:
            raise StoreUnavailable("this log was opened read-only")
        try:
            await self._bridge.run(self._js.stream_info(self.options.stream))
        except Exception as exc:
            raise StoreUnavailable(
                f"JetStream stream {self.options.stream} is not available ({exc!r})"
            ) from None

    def saturated(self) -> bool:
        """Whether the acks awaited reach the bound, or the connection is down (new requests
        would only wait for ``ack_timeout`` and be answered 503)."""
        return self._pending >= self._max_pending or not self._nc.is_connected

    def stats(self) -> dict[str, int]:
        return {"commits": self._commits, "written": self._written, "pending": self._pending, "flushes": 0}

    def head_seq(self) -> int:
        info = self._call(retrying(lambda: self._reads.stream_info(self.options.stream)))
        return int(info.state.last_seq)

    def read_events(
        self, after: int = 0, limit: int = 1000, source_id: int | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        if type is not None and type not in self._types:
            return []
        subject = f"{self._prefix}.{'*' if source_id is None else source_id}.{type or '*'}"
        return self._call(retrying(lambda: self._read(after, limit, subject)))

    async def _read(self, after: int, limit: int, subject: str) -> list[StoredEvent]:
        reader = self._reader
        if reader is None or reader.filter != subject or reader.next_after != after:
            await self._drop_reader()
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=api.AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
                num_replicas=1,
            )
            sub = await self._reads.pull_subscribe(subject, stream=self.options.stream, config=config)
            reader = self._reader = _Reader(sub, subject, after)
        try:
            info = await reader.sub.consumer_info()
            want = min(limit, (info.num_pending or 0) + reader.sub.pending_msgs)
            if want <= 0:
                return []
            msgs = await reader.sub.fetch(batch=want, timeout=2 * _READ_TIMEOUT)
        except BaseException:
            # The consumer may be gone with its node: make a new one (the old one expires).
            await self._drop_reader(delete=False)
            raise
        events = [self._stored(msg) for msg in msgs]
        if len(msgs) < want:
            await self._drop_reader()  # what comes late would be out of step with the cursor
        elif events:
            reader.next_after = events[-1].seq
        return events

    def _stored(self, msg: Any) -> StoredEvent:
        _, _, rest = msg.subject.partition(f"{self._prefix}.")
        source, _, kind = rest.partition(".")
        return StoredEvent(msg.metadata.sequence.stream, int(source), kind, bytes(msg.data))

    async def _drop_reader(self, *, delete: bool = True) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        with contextlib.suppress(Exception):  # it expires on its own (inactive_threshold)
            await reader.sub.unsubscribe()
            if delete:
                await self._reads.delete_consumer(self.options.stream, reader.sub._consumer)

    def _call(
        self, coro: Coroutine[Any, Any, T], timeout: float = _RETRY_SECONDS + 2 * _REQUEST_TIMEOUT
    ) -> T:
        try:
            return self._bridge.call(coro, timeout)
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(f"JetStream did not answer ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._bridge.call(self._shutdown(), _REQUEST_TIMEOUT)
        self._bridge.stop()
        self._on_close()

    async def _shutdown(self) -> None:
        await self._drop_reader()
        await self._nc.close()


async def connect(options: JetStreamOptions) -> Client:
    """A client of the URL's servers that reconnects for ever (on the caller's loop)."""

    async def quiet(exc: Exception) -> None:
        # nats-py logs every failed reconnect attempt; one line at debug level is enough.
        log.debug("nats: %s", exc)

    # Bounded here: nats-py retries the first connection as it does a reconnect, forever.
    connecting = nats.connect(
        servers=list(options.servers),
        connect_timeout=2,
        reconnect_time_wait=0.25,
        max_reconnect_attempts=-1,
        ping_interval=5,
        max_outstanding_pings=2,
        error_cb=quiet,
        allow_reconnect=True,
    )
    return await asyncio.wait_for(connecting, _CONNECT_SECONDS)


async def retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` again while a node loss or a leader election makes it fail, up to
    ``_RETRY_SECONDS``; then its last error."""
    deadline = time.monotonic() + _RETRY_SECONDS
    pause = 0.05
    while True:
        try:
            return await attempt()
        except (*_RETRY, nats.js.errors.NotFoundError) as exc:
            # NotFoundError: a reader's consumer vanished with its node (the stream is looked
            # up by name, and a missing stream is created, before anything retries on it).
            if time.monotonic() + pause >= deadline:
                raise
            log.debug("JetStream request failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

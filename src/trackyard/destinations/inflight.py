"""Several requests of one destination in flight at once, never two of one person's.

A kind whose requests each carry one person (``koala``: Koala takes one person a request)
names them in ``OutgoingRequest.people``; up to ``in_flight`` such requests are out at
once, each sent from a thread of a small pool with a connection of its own. A request
is sent only when none of its people is in a request that is in flight or earlier in
the batch and not settled yet, so one person's requests arrive in their order, and a
request that is retried holds back its people's later requests. A request without people
(a batch of many users: every other kind) is a barrier: it waits until nothing is in
flight and goes alone, so those kinds send one request at a time, in order, as before.

Only the first attempt of a request runs in a pool thread. Its outcome (the answer or the
error) is settled on the calling thread, which keeps every registry write, retry and dead
letter: while a retry waits there, nothing new is sent (the requests already in flight
finish). The batch returns once every request of it is settled, so the runner moves the
cursor past a batch only when all its requests are; a crash before that sends the batch
again (at least once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx

from trackyard.destinations.kinds.base import OutgoingRequest
from trackyard.destinations.transport import Answer, Transport

#: A first attempt's outcome: the answer, or the error that came instead.
Attempt = Answer | httpx.HTTPError
#: A request with its place in the batch (requests are settled in that order).
_Placed = tuple[int, OutgoingRequest]


class Senders:
    """The transports of one destination: the calling thread's and the pool's, one each."""

    def __init__(self, timeout: float, in_flight: int) -> None:
        self._timeout = timeout
        self._in_flight = max(in_flight, 1)
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def post(self, request: OutgoingRequest) -> Answer:
        """Send ``request`` once from this thread (its own kept-alive connections)."""
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = Transport(self._timeout)
            with self._lock:
                self._transports.append(transport)
        return transport.post(request.url, request.body, request.headers)

    def attempt(self, request: OutgoingRequest) -> Attempt:
        try:
            return self.post(request)
        except httpx.HTTPError as error:
            return error

    def run(
        self, requests: Sequence[OutgoingRequest], settle: Callable[[OutgoingRequest, Attempt], None]
    ) -> None:
        """Send ``requests`` (in their order, as the rules above allow) and ``settle`` each
        with its first attempt's outcome, on this thread; returns when all are settled."""
        if self._in_flight == 1:  # one at a time: no pool
            for request in requests:
                settle(request, self.attempt(request))
            return
        pending = list(enumerate(requests))  # each with its place, to settle in order
        flying: dict[Future[Attempt], _Placed] = {}
        try:
            while pending or flying:
                if pending and not pending[0][1].people and not flying:
                    request = pending.pop(0)[1]
                    settle(request, self.attempt(request))
                    continue
                pending = self._dispatch(pending, flying)
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: flying[f][0]):
                    settle(flying.pop(future)[1], future.result())
        finally:
            wait(flying)  # a stop while a retry waited: what is out ends before the batch is given up

    def _dispatch(
        self,
        pending: list[_Placed],
        flying: dict[Future[Attempt], _Placed],
    ) -> list[_Placed]:
        """Send what may go now; the requests left, in order."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._in_flight, thread_name_prefix="destination-send")
        busy: set[str] = set()
        for _, request in flying.values():
            busy |= request.people
        left: list[_Placed] = []
        for index, (place, request) in enumerate(pending):
            if not request.people or len(flying) >= self._in_flight:
                return left + pending[index:]  # a barrier, or no room: the rest waits
            if request.people.isdisjoint(busy):
                flying[self._pool.submit(self.attempt, request)] = (place, request)
            else:
                left.append((place, request))
            busy |= request.people
        return left

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            for transport in self._transports:
                transport.close()
            self._transports.clear()

"""A request's publishes sent at once, their acks received on one reply subscription.

A JetStream publish is a NATS message with a reply subject, on which the stream's leader
answers with the ack (a small JSON object: ``stream``, ``seq``, ``duplicate``, or
``error``). nats-py's ``publish_async`` makes a future, a random token and a done
callback per message and turns each ack into a dataclass, which was about a third of a
collector's CPU per event. Here a log keeps one reply subscription for its life (the
subjects ``<inbox>.<n>``, ``n`` counting up), a request waits on one future for all of
its acks, and an ack is decoded by msgspec.

nats-py subscribes the inbox again after a reconnect; an ack lost with a connection is
not waited for past the caller's timeout, and the caller publishes that event again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

#: One publish: subject, body, headers.
Message = tuple[str, bytes, dict[str, str]]


class _Ack(msgspec.Struct):
    duplicate: bool = False
    error: Any = None


_decode_ack = msgspec.json.Decoder(_Ack).decode


class _Request:
    """The acks one request waits for: per message whether it was new, ``None`` until acked."""

    __slots__ = ("done", "left", "outcomes", "sealed")

    def __init__(self, size: int) -> None:
        self.outcomes: list[bool | None] = [None] * size
        self.left = 0  # messages sent whose ack has not come
        self.sealed = False  # every message that will be sent was sent
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(self) -> None:
        if self.sealed and self.left == 0 and not self.done.done():
            self.done.set_result(None)


class AckInbox:
    """Pipelined JetStream publishes of one connection (call everything on its loop)."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._next = 0
        self._waiting: dict[str, tuple[_Request, int]] = {}

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def publish(self, messages: Sequence[Message], timeout: float) -> list[bool | None]:
        """Send ``messages`` in order and wait up to ``timeout`` for all their acks; per
        message whether it was new, or ``None`` when it got no ack, or an error, in time (or
        was not sent: the connection is down), for the caller to publish again."""
        request = _Request(len(messages))
        tokens: list[str] = []
        try:
            # A lost connection stops the sending: what was not sent stays None.
            with contextlib.suppress(nats.errors.Error):
                for index, (subject, body, headers) in enumerate(messages):
                    token = str(self._next)
                    self._next += 1
                    self._waiting[token] = (request, index)
                    tokens.append(token)
                    request.left += 1
                    try:
                        await self._nc.publish(subject, body, reply=self._prefix + token, headers=headers)
                    except BaseException:
                        del self._waiting[token]
                        request.left -= 1
                        raise
            request.sealed = True
            request.settle()
            await asyncio.wait((request.done,), timeout=timeout)
            return request.outcomes
        finally:
            for token in tokens:  # acks that come later are dropped
                self._waiting.pop(token, None)
            request.done.cancel()

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if waiting is None:
            return  # its request stopped waiting
        request, index = waiting
        request.outcomes[index] = _new(msg)
        request.left -= 1
        request.settle()


def _new(msg: Msg) -> bool | None:
    """Whether the ack says the message was stored now (not a duplicate); ``None`` for an
    error, or a status without an ack (no responders: the stream has no leader)."""
    if msg.headers and msg.headers.get("Status"):
        return None
    try:
        ack = _decode_ack(msg.data)
    except msgspec.DecodeError:
        return None
    return None if ack.error is not None else not ack.duplicate

"""Requests refused for their credentials, kept as rejects without a source: sampled and bounded.

A wrong write key is the first thing to look for when an SDK "doesn't work", so the
debugger and ``trackyard rejects`` show such refusals beside the others. But anyone can
send a request with a wrong key: keeping each one would let an unauthenticated flood fill
the disk and take the writer's time. So a refusal for its credentials is kept

- without its body (nothing a stranger sends is stored), as a reject of no source
  (``NO_SOURCE``) whose payload says which key and client it came from;
- with the key's *fingerprint* only: its first 4 characters and a hash of it, never the key;
- at most once per (client IP, key fingerprint) per :data:`PER_CLIENT_SECONDS`, and at most
  :data:`PER_MINUTE` a minute in all, per worker process; the rest are only counted
  (``trackyard_ingest_refusals_total``).

Only the refusal path does this work; a request whose key is right never reaches it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import msgspec

from trackyard.errors import IngestError
from trackyard.storage.base import NO_SOURCE, AppendResult, EventRecord, RejectRecord

log = logging.getLogger("trackyard.ingest")

#: A (client IP, key fingerprint) pair is kept at most once in this many seconds.
PER_CLIENT_SECONDS: Final = 10.0
#: At most this many kept a minute, whoever sends them (per worker process).
PER_MINUTE: Final = 60

Commit = Callable[[Sequence[EventRecord], Sequence[RejectRecord]], Awaitable[AppendResult]]


def fingerprint(key: str | None) -> str:
    """What a reject says of a key: enough to tell keys apart, too little to use one."""
    if not key:
        return "none"
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:8]
    return f"{key[:4]}…{digest}" if len(key) >= 12 else f"…{digest}"


class AuthFailures:
    """The bound (see the module docstring); ``clock`` is seconds, monotonic."""

    def __init__(
        self,
        per_client_seconds: float = PER_CLIENT_SECONDS,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_client_seconds = per_client_seconds
        self._per_minute = per_minute
        self._clock = clock
        self._last_kept: dict[tuple[str, str], float] = {}
        self._minute_started = float("-inf")
        self._kept_this_minute = 0

    def admit(self, client_ip: str, key_fingerprint: str) -> bool:
        """Whether a refusal from ``client_ip`` with this key is kept now (and count it if so)."""
        now = self._clock()
        if now - self._minute_started >= 60.0:
            self._minute_started, self._kept_this_minute = now, 0
            # What is older than a client's interval no longer matters: at most 2 minutes' worth stay.
            horizon = now - self._per_client_seconds
            self._last_kept = {pair: at for pair, at in self._last_kept.items() if at > horizon}
        if self._kept_this_minute >= self._per_minute:
            return False
        pair = (client_ip, key_fingerprint)
        last = self._last_kept.get(pair)
        if last is not None and now - last < self._per_client_seconds:
            return False
        self._last_kept[pair] = now
        self._kept_this_minute += 1
        return True

    async def keep(self, commit: Commit, route: str, client_ip: str | None, refused: IngestError) -> None:
        """Keep ``refused`` as a reject of no source if the bound allows; never raises for the store."""
        key = fingerprint(refused.write_keys[0] if refused.write_keys else None)
        ip = client_ip or "unknown"
        if not self.admit(ip, key):
            return
        payload = msgspec.json.encode({"key": key, "client_ip": ip})
        at_ms = time.time_ns() // 1_000_000
        reject = RejectRecord(NO_SOURCE, at_ms, route, refused.code, refused.message, None, payload)
        try:
            await commit((), [reject])
        except IngestError as error:  # overloaded or unavailable: the refusal is answered all the same
            log.debug("a %s refusal was not kept: %s", refused.code, error.message)

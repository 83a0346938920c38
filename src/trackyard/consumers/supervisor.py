"""The supervisor: runs each enabled consumer as a process of its own, under its lease.

For each consumer it first takes the lease (non-blocking, retried every second), so on
one data dir exactly one instance of a consumer runs however many supervisors there are:
a second supervisor waits, and takes over once the first has gone. Holding the lease, it
starts the consumer's process and hands it the lease's descriptor: the lease stays held
until both have exited, so neither a dying supervisor nor a dying child lets a second
instance start while the other still runs. A child that dies is started again after a
backoff (doubling, capped). On stop, every child gets SIGTERM, finishes and commits its
batch, and exits; one that has not exited after ``stop_timeout`` is killed (what it had
not committed is handed over again next time: at least once).

The set of consumers is read again every second (:func:`~trackyard.consumers.registry.wanted`):
a family member added (a destination) gets a slot and starts; one removed, disabled or
changed (its ``revision``) is stopped like the rest on stop, its lease released, and (when
changed) started again with its new configuration. So each destination is a process of
its own, and the first one of a data dir starts while the server runs.

Processes, not threads: consumers do Python work, and in the server's process they would
compete with ingestion for the GIL; and a hung or crashing one takes no other with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from trackyard.config import LogFormat, Settings
from trackyard.consumers.registry import ConsumerSpec, wanted
from trackyard.consumers.runner import Backoff, StopFlag
from trackyard.logs import JSONFormatter
from trackyard.storage.base import Lease, LeaseProvider
from trackyard.storage.factory import open_leases

log = logging.getLogger("trackyard.consumers")

_TICK = 0.1
#: Seconds between reads of which consumers should run (destinations come and go).
_REFRESH = 1.0
#: A child that ran this long before dying starts its next backoff from the beginning.
_HEALTHY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    restart: Backoff = Backoff()
    #: Seconds between attempts to take a lease someone else holds.
    lease_retry: float = 1.0
    #: Seconds a child may take to stop after SIGTERM before it is killed.
    stop_timeout: float = 30.0


@dataclass
class _Slot:
    spec: ConsumerSpec
    lease: Lease | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    next_lease_try: float = 0.0
    waiting_logged: bool = False
    exits: list[int] = field(default_factory=list)
    #: When it is no longer wanted: the time by which its process must have stopped.
    retire_by: float | None = None


class Supervisor:
    """Runs the named consumers (all when none) until :meth:`request_stop`."""

    def __init__(
        self,
        settings: Settings,
        names: Sequence[str] = (),
        *,
        log_level: str = "info",
        policy: RestartPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._names = tuple(names)
        self._slots = [_Slot(spec) for spec in wanted(names, settings)]
        self._next_refresh = time.monotonic() + _REFRESH
        self._exits: dict[str, list[int]] = {}
        self._leases: LeaseProvider = open_leases(settings)
        self._log_level = log_level
        self.policy = policy or RestartPolicy()
        self._stop = StopFlag()
        self._thread: threading.Thread | None = None

    def pids(self) -> dict[str, int]:
        """The consumers running now, by name: their process ids."""
        running = {}
        for slot in self._slots:
            process = slot.process  # read once: the supervisor's thread may replace it
            if process is not None and process.poll() is None:
                running[slot.spec.name] = process.pid
        return running

    def waiting(self) -> list[str]:
        """The consumers whose lease another process holds (this supervisor waits for it)."""
        return [s.spec.name for s in self._slots if s.lease is None and s.next_lease_try > 0]

    def exits(self) -> dict[str, list[int]]:
        """Each consumer's exit statuses so far (negative: killed by that signal)."""
        exits = {name: list(codes) for name, codes in self._exits.items()}
        for slot in self._slots:
            exits[slot.spec.name] = exits.get(slot.spec.name, []) + slot.exits
        return exits

    def request_stop(self) -> None:
        """Ask for a graceful stop; safe in a signal handler (it only sets a flag)."""
        self._stop.set()

    def run(self) -> None:
        """Supervise until asked to stop, then stop every child and release the leases."""
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= self._next_refresh:
                    self._refresh(now)
                for slot in list(self._slots):
                    if slot.retire_by is not None:
                        self._retire(slot, now)
                    else:
                        self._tend(slot, now)
                self._stop.wait(_TICK)
        finally:
            self._stop_children()

    def start(self) -> None:
        """Supervise in a background thread (beside the HTTP server)."""
        self._thread = threading.Thread(target=self.run, name="trackyard-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the background thread, children included."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join()

    def _refresh(self, now: float) -> None:
        """Start slots for consumers wanted now, retire those no longer wanted or changed."""
        self._next_refresh = now + _REFRESH
        try:
            specs = {spec.name: spec for spec in wanted(self._names, self.settings)}
        except Exception:  # a registry briefly unreadable: keep what runs, try again
            log.exception("could not read which consumers to run; trying again in %.0fs", _REFRESH)
            return
        for slot in self._slots:
            spec = specs.get(slot.spec.name)
            if slot.retire_by is None and (spec is None or spec.revision != slot.spec.revision):
                why = "removed or disabled" if spec is None else "changed"
                log.info("consumer %s %s; stopping it", slot.spec.name, why)
                slot.retire_by = now + self.policy.stop_timeout
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.send_signal(signal.SIGTERM)
        have = {slot.spec.name for slot in self._slots}
        self._slots += [_Slot(spec) for name, spec in specs.items() if name not in have]

    def _retire(self, slot: _Slot, now: float) -> None:
        """Once its process has exited (killed past ``retire_by``), free the lease and the slot."""
        assert slot.retire_by is not None
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                if now < slot.retire_by:
                    return
                log.error("consumer %s did not stop in time; killing it", slot.spec.name)
                slot.process.kill()
                code = slot.process.wait()
            slot.exits.append(code)
            slot.process = None
        if slot.lease is not None:
            slot.lease.release()
            slot.lease = None
        self._exits.setdefault(slot.spec.name, []).extend(slot.exits)
        self._slots.remove(slot)
        log.info("consumer %s stopped", slot.spec.name)

    def _tend(self, slot: _Slot, now: float) -> None:
        if slot.lease is None:
            if now < slot.next_lease_try:
                return
            slot.lease = self._leases.acquire(slot.spec.name)
            if slot.lease is not None:
                slot.next_lease_try = 0.0
            else:
                slot.next_lease_try = now + self.policy.lease_retry
                if not slot.waiting_logged:
                    log.info(
                        "consumer %s runs elsewhere on this data dir; waiting for its lease", slot.spec.name
                    )
                    slot.waiting_logged = True
                return
            log.info("consumer %s: lease taken", slot.spec.name)
            slot.next_start = now
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return
            ran = now - slot.started_at
            slot.process = None
            slot.exits.append(code)
            slot.failures = 1 if ran >= _HEALTHY_SECONDS else slot.failures + 1
            delay = self.policy.restart.delay(slot.failures)
            slot.next_start = now + delay
            log.warning(
                "consumer %s exited (%s) after %.1fs; restarting in %.1fs",
                slot.spec.name,
                _describe(code),
                ran,
                delay,
            )
            return
        if now >= slot.next_start:
            slot.process = self._spawn(slot.spec.name, slot.lease)
            slot.started_at = now

    def _spawn(self, name: str, lease: Lease) -> subprocess.Popen[bytes]:
        fd = lease.fileno()
        env = {**os.environ, **self.settings.to_env(), "TRACKYARD_LOG_LEVEL": self._log_level}
        process = subprocess.Popen(
            [sys.executable, "-m", "trackyard.consumers._child", name, str(os.getpid())],
            env=env,
            pass_fds=() if fd is None else (fd,),
            stdin=subprocess.DEVNULL,
        )
        log.info("consumer %s started (pid %d)", name, process.pid)
        return process

    def _stop_children(self) -> None:
        running = [slot for slot in self._slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None
            if slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout
        for slot in running:
            assert slot.process is not None
            try:
                slot.process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                log.error(
                    "consumer %s did not stop in %.0fs; killing it", slot.spec.name, self.policy.stop_timeout
                )
                slot.process.kill()
                slot.process.wait()
            slot.exits.append(slot.process.returncode)
            slot.process = None
        for slot in self._slots:
            if slot.lease is not None:
                slot.lease.release()
                slot.lease = None


def _describe(code: int) -> str:
    if code < 0:
        with_name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"killed by {with_name}"
    return f"status {code}"


def log_to_stderr(level: str, fmt: LogFormat = "text") -> None:
    """Show the consumers' log lines (starts, restarts, dead letters) beside the server's."""
    logger = logging.getLogger("trackyard")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            JSONFormatter() if fmt == "json" else logging.Formatter("%(levelname)s:     %(message)s")
        )
        logger.addHandler(handler)
        logger.setLevel(level.upper())


def run_in_foreground(settings: Settings, names: Sequence[str] = (), log_level: str = "info") -> None:
    """Supervise the consumers in this thread until SIGTERM or SIGINT, then stop them gracefully."""
    log_to_stderr(log_level, settings.log_format)
    supervisor = Supervisor(settings, names, log_level=log_level)
    previous = {
        sig: signal.signal(sig, lambda *_: supervisor.request_stop())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

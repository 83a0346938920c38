"""The ``retention`` consumer: compaction and retention in the background, under its lease.

It reads no events: it compacts the cold log a block at a time (each block one short
transaction, so ingest waits at most one of them), and every ``interval`` runs a pass of
the retention policy. When no event has come in for a round it cuts back the write-ahead
log (:meth:`~trackyard.storage.base.LogMaintenance.checkpoint`). It runs under ``serve``
(and ``consume``) like every consumer, in a process of its own, so it never competes with
ingestion for the GIL; a SIGKILL at any point leaves the log whole, and the next start
resumes where it stopped.
"""

from __future__ import annotations

import logging
import time

from trackyard.consumers.runner import NoSink, Runner, RunPolicy
from trackyard.retention.policy import NAME, Policy, describe_holds, run_pass
from trackyard.storage.factory import Backends, open_maintenance
from trackyard.units import format_duration, format_size

log = logging.getLogger("trackyard.retention")

#: Seconds between rounds of compaction (passes of retention: TRACKYARD_RETENTION_INTERVAL_SECONDS).
COMPACT_SECONDS = 2.0
#: Blocks compacted per round at most, so a stop is never far.
_BLOCKS_PER_ROUND = 32


class RetentionRunner(Runner):
    def __init__(self, backends: Backends) -> None:
        self._maintenance = open_maintenance(backends.settings)
        super().__init__(NAME, backends.log, NoSink(self._maintenance.close), None, None, RunPolicy())
        self._backends = backends
        self.policy_ = Policy.from_settings(backends.settings)
        self._held: str | None = None

    def position(self) -> int:
        """It reads nothing: never behind."""
        return self._log.head_seq()

    def run(self) -> None:
        policy = self.policy_
        log.info(
            "retention: keeping %s, at most %s of log%s; rejects %s, dead letters %s",
            format_duration(policy.max_age_seconds),
            format_size(policy.max_bytes) if policy.max_bytes else "any size",
            " (even what consumers have not read)" if policy.ignore_consumers else "",
            format_duration(policy.rejects_seconds),
            format_duration(policy.dead_letters_seconds),
        )
        next_pass = 0.0
        last_head: int | None = None
        while not self.stop.is_set():
            try:
                head = self._log.head_seq()
                if not self.compact_round() and head == last_head:
                    # Nothing came in since the last round: the write-ahead log the burst
                    # (and compaction) grew can go, without holding up any request.
                    self._maintenance.checkpoint()
                last_head = head
                if time.monotonic() >= next_pass:
                    self._pass()
                    next_pass = time.monotonic() + self._backends.settings.retention_interval_seconds
            except Exception:  # a full disk, a locked file: try again next round
                log.exception("retention: a round failed; trying again in %.0fs", COMPACT_SECONDS)
            self.stop.wait(COMPACT_SECONDS)
        log.info("retention: stopped")

    def compact_round(self) -> int:
        """Compact up to a round's blocks; the events moved."""
        moved = 0
        for _ in range(_BLOCKS_PER_ROUND):
            if self.stop.is_set():
                break
            events = self._maintenance.compact()
            if not events:
                break
            moved += events
        if moved:
            # Compaction freed the rows' pages: beyond a small reserve they go back now,
            # not at the next pass (ingest reuses the reserve).
            self._maintenance.reclaim()
        return moved

    def _pass(self) -> None:
        report = run_pass(self._backends, self._maintenance, self.policy_, stop=self.stop.is_set)
        if report.dropped_events or report.rejects or report.dead_letters:
            log.info(
                "retention: dropped %d events (%s on disk), %d rejects, %d dead letters;"
                " %s returned to the OS",
                report.dropped_events,
                format_size(report.dropped_bytes),
                report.rejects,
                report.dead_letters,
                format_size(report.reclaimed_bytes),
            )
        held = describe_holds(report.held_by) if report.held_by else None
        if held != self._held:  # said once when it starts and once when it ends, not every pass
            if held:
                log.warning(
                    "retention: held back by %s: events due to be dropped are kept until it has read them"
                    " (or run `trackyard store prune --ignore-consumers`)",
                    held,
                )
            else:
                log.info("retention: no longer held back")
            self._held = held


def open_runner(backends: Backends) -> Runner:
    """The registry's entry."""
    return RetentionRunner(backends)

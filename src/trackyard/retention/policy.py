"""What retention keeps: the policy, the consumers that hold it back, and one pass of it.

Backend-neutral: a backend offers its oldest compacted part (``LogMaintenance``) and drops
it when told; this module decides. A part is dropped when it is past the age limit or the
log is over its size limit, and only once every enabled consumer has read all of it
(unless the operator said otherwise): an event a consumer still needs is never dropped
behind its back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from trackyard.config import Settings
from trackyard.consumers.registry import wanted
from trackyard.consumers.runner import mirror_name
from trackyard.consumers.status import Positions
from trackyard.storage.base import LogExtent, LogMaintenance, LogPart
from trackyard.storage.factory import Backends

log = logging.getLogger("trackyard.retention")

#: The consumer that runs retention; it reads nothing, so it holds nothing back.
NAME = "retention"
#: Forced compactions per pass at most (retention compacts the old rows it must drop).
_MAX_FORCED = 100_000


@dataclass(frozen=True, slots=True)
class Policy:
    #: 0 means no limit.
    max_age_seconds: int = 0
    max_bytes: int = 0
    ignore_consumers: bool = False
    rejects_seconds: int = 30 * 86_400
    dead_letters_seconds: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.retention_seconds,
            settings.retention_bytes,
            settings.retention_ignore_consumers,
            settings.rejects_retention_seconds,
            settings.dead_letters_retention_seconds,
        )

    def age_cutoff_ms(self, now_ms: int) -> int | None:
        return None if self.max_age_seconds <= 0 else now_ms - self.max_age_seconds * 1000


@dataclass(frozen=True, slots=True)
class Hold:
    """An enabled consumer's position: retention drops nothing after it."""

    consumer: str
    position: int
    #: Why the position is a stand-in (its own store could not be opened), if it is.
    note: str | None = None


def consumer_holds(backends: Backends, positions: Positions | None = None) -> list[Hold]:
    """The position of every enabled consumer (each destination, ``destination:NAME``, on its own)."""
    positions = positions or Positions(backends)
    holds: list[Hold] = []
    for spec in wanted((), backends.settings):
        if not spec.reads_log:  # retention itself, the metrics reader: they hold nothing back
            continue
        try:
            holds.append(Hold(spec.name, positions.of(spec)))
        except Exception as error:  # e.g. the running loader holds its DuckDB file
            # The runner mirrors its position into the cursor store after each batch: a
            # lower bound of the real one, so retention stays on the safe side.
            note = f"position from its last mirrored cursor ({type(error).__name__}: {error})"
            holds.append(Hold(spec.name, backends.cursors().get(mirror_name(spec.name)), note))
    return holds


@dataclass
class PassReport:
    compacted_events: int = 0
    dropped_parts: int = 0
    dropped_events: int = 0
    dropped_bytes: int = 0
    rejects: int = 0
    dead_letters: int = 0
    reclaimed_bytes: int = 0
    #: The consumers that kept a part retention would have dropped (empty: none did).
    held_by: list[Hold] = field(default_factory=list)


def due_part(maintenance: LogMaintenance, policy: Policy, stored_bytes: int, now_ms: int) -> LogPart | None:
    """The oldest part if the policy wants it gone now (past the age limit, or over the size)."""
    part = maintenance.oldest_part()
    if part is None:
        return None
    cutoff = policy.age_cutoff_ms(now_ms)
    too_old = cutoff is not None and part.newest_received_ms < cutoff
    too_big = policy.max_bytes > 0 and stored_bytes > policy.max_bytes
    return part if too_old or too_big else None


def blocking(holds: list[Hold], part: LogPart) -> list[Hold]:
    """The consumers that have not read all of ``part``."""
    return [hold for hold in holds if hold.position < part.last_seq]


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What ``trackyard store status`` and ``/metrics`` show: the log, its disk, its holds."""

    extent: LogExtent
    disk_usage: dict[str, int]
    #: Every enabled consumer's position.
    holds: list[Hold]
    #: The consumers keeping the part retention would drop now (empty: none is).
    held_by: list[Hold]


def retention_status(
    backends: Backends,
    maintenance: LogMaintenance,
    policy: Policy,
    now_ms: int | None = None,
    positions: Positions | None = None,
) -> RetentionStatus:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    extent = maintenance.extent()
    holds = consumer_holds(backends, positions)
    due = due_part(maintenance, policy, extent.stored_bytes, now)
    held = [] if due is None or policy.ignore_consumers else blocking(holds, due)
    return RetentionStatus(extent, maintenance.disk_usage(), holds, held)


def run_pass(
    backends: Backends,
    maintenance: LogMaintenance,
    policy: Policy,
    *,
    now_ms: int | None = None,
    progress: Callable[[PassReport], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> PassReport:
    """Compact what retention must drop, drop what is due and allowed, prune rejects and dead
    letters, return the space. Each step is its own transaction: a crash loses nothing."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    report = PassReport()
    tell = progress or (lambda _: None)
    cutoff = policy.age_cutoff_ms(now)
    # Rows past the age limit are compacted now, even into a partial block: only blocks
    # are dropped. (Each compaction moves at least a row; the newest row always stays.)
    for _ in range(_MAX_FORCED):
        oldest_hot = maintenance.oldest_hot_received_ms()
        if stop() or cutoff is None or oldest_hot is None or oldest_hot >= cutoff:
            break
        moved = maintenance.compact(force=True, received_before_ms=cutoff)
        if not moved:
            break
        report.compacted_events += moved
        tell(report)
    limited = policy.max_age_seconds > 0 or policy.max_bytes > 0
    holds = consumer_holds(backends) if limited and not policy.ignore_consumers else []
    stored = maintenance.extent().stored_bytes
    while not stop():
        part = due_part(maintenance, policy, stored, now)
        if part is None:
            # Over the size with every block gone: compact more of the hot rows (which
            # shrinks the log already) and go on.
            if policy.max_bytes and stored > policy.max_bytes and (moved := maintenance.compact(force=True)):
                report.compacted_events += moved
                stored = maintenance.extent().stored_bytes
                tell(report)
                continue
            break
        held = blocking(holds, part)
        if held:
            report.held_by = held
            break
        maintenance.drop(part)
        stored -= part.stored_bytes
        report.dropped_parts += 1
        report.dropped_events += part.last_seq - part.first_seq + 1
        report.dropped_bytes += part.stored_bytes
        tell(report)
    if policy.rejects_seconds > 0:
        report.rejects = maintenance.prune_rejects(now - policy.rejects_seconds * 1000)
    if policy.dead_letters_seconds > 0:
        report.dead_letters = backends.dead_letters().prune(now - policy.dead_letters_seconds * 1000)
    report.reclaimed_bytes = maintenance.reclaim()
    return report


def describe_holds(held: list[Hold]) -> str:
    return ", ".join(
        f"{hold.consumer} (at seq {hold.position}{'; ' + hold.note if hold.note else ''})" for hold in held
    )

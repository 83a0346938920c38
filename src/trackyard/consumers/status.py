"""How far each consumer is: what ``trackyard consumers status`` prints and ``/metrics`` exports."""

from __future__ import annotations

from dataclasses import dataclass

from trackyard.config import Settings
from trackyard.consumers.registry import CONSUMERS, FAMILIES, resolve
from trackyard.storage.factory import Backends


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    name: str
    running: bool
    #: The seq of the last event handled; ``None`` when the consumer's store cannot be read.
    cursor: int | None
    head: int
    dead_letters: int
    error: str | None = None

    @property
    def lag(self) -> int | None:
        """Events in the log the consumer has not handled yet."""
        return None if self.cursor is None else max(self.head - self.cursor, 0)


def consumer_statuses(backends: Backends, settings: Settings) -> list[ConsumerStatus]:
    """Every consumer ``settings`` configure or that is running, in the registry's order, then
    each family's members (a destination is ``destination:NAME``, disabled ones included:
    they keep their cursor)."""
    enabled = {spec.name for spec in resolve((), settings)}
    statuses = []
    for spec in CONSUMERS.values():
        running = backends.leases().held(spec.name)
        if spec.name not in enabled and not running:
            continue  # not configured here (the warehouse without TRACKYARD_WAREHOUSE)
        head = backends.log.head_seq()
        error = None
        try:
            runner = spec.open_runner(backends)
        except Exception as problem:  # e.g. an embedded DuckDB file the running loader holds
            cursor: int | None = None
            error = f"{type(problem).__name__}: {problem}"
        else:
            try:
                cursor = runner.position()
            finally:
                runner.sink.close()
        statuses.append(
            ConsumerStatus(spec.name, running, cursor, head, backends.dead_letters().count(spec.name), error)
        )
    head = backends.log.head_seq()
    for family in FAMILIES.values():
        for name in family.configured(settings):
            statuses.append(
                ConsumerStatus(
                    name,
                    backends.leases().held(name),
                    backends.cursors().get(name),
                    head,
                    backends.dead_letters().count(name),
                )
            )
    return statuses

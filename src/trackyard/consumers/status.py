"""How far each consumer is: what ``trackyard consumers status`` prints and ``/metrics`` exports."""

from __future__ import annotations

from dataclasses import dataclass

from trackyard.config import Settings
from trackyard.consumers.registry import CONSUMERS, FAMILIES, ConsumerSpec, resolve
from trackyard.consumers.runner import mirror_name
from trackyard.storage.factory import Backends


class Positions:
    """Each consumer's position, read once by opening its runner, then kept.

    Opening some runners is not cheap (the warehouse loader's connects to its DuckDB file),
    and one reading of the store gauges asks twice: for the lag, and for retention's holds.
    With ``mirrors_while_running`` (the metrics reader, a process that reads every few
    seconds for ever), the position of a running consumer whose runner mirrors it is read
    from the mirror: that process then never imports DuckDB and pyarrow (about 75 MB) nor
    takes the loader's file from it. A gauge may lag a batch behind; nothing is dropped on it.
    """

    def __init__(self, backends: Backends, *, mirrors_while_running: bool = False) -> None:
        self._backends = backends
        self._mirrors = mirrors_while_running
        self._found: dict[str, int | Exception] = {}

    def of(self, spec: ConsumerSpec) -> int:
        """Its position, or the exception opening its runner raised."""
        found = self._found.get(spec.name)
        if found is None and self._mirrors and spec.mirrored and self._backends.leases().held(spec.name):
            found = self._found[spec.name] = self._backends.cursors().get(mirror_name(spec.name))
        if found is None:
            try:
                runner = spec.open_runner(self._backends)
            except Exception as problem:  # e.g. an embedded DuckDB file the running loader holds
                found = problem
            else:
                try:
                    found = runner.position()
                finally:
                    runner.sink.close()
            self._found[spec.name] = found
        if isinstance(found, Exception):
            raise found
        return found


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


def consumer_statuses(
    backends: Backends, settings: Settings, positions: Positions | None = None
) -> list[ConsumerStatus]:
    """Every consumer ``settings`` configure or that is running, in the registry's order, then
    each family's members (a destination is ``destination:NAME``, disabled ones included:
    they keep their cursor)."""
    positions = positions or Positions(backends)
    enabled = {spec.name for spec in resolve((), settings)}
    statuses = []
    for spec in CONSUMERS.values():
        running = backends.leases().held(spec.name)
        if spec.name not in enabled and not running:
            continue  # not configured here (the warehouse without TRACKYARD_WAREHOUSE)
        head = backends.log.head_seq()
        error = None
        try:
            cursor: int | None = positions.of(spec)
        except Exception as problem:  # e.g. an embedded DuckDB file the running loader holds
            cursor = None
            error = f"{type(problem).__name__}: {problem}"
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

"""The ``metrics`` consumer: reads the store gauges every few seconds, for ``/metrics`` to serve.

It reads no events. Every ``metrics_interval_seconds`` it reads what ``/metrics`` shows of
the stores (consumers' lag, sizes, retention, destinations) and writes it to the cache
file of :mod:`trackyard.metrics.gauges`, so a scrape never queries a store and the HTTP
workers spend nothing on it. It runs under ``serve`` and ``consume`` like every consumer,
in a process of its own under its lease: one reader a data dir (or ``--state`` database).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from trackyard.consumers.runner import NoSink, Runner, RunPolicy
from trackyard.metrics.gauges import read_store_gauges, write_store_gauges
from trackyard.storage.factory import Backends, shared_gauges

if TYPE_CHECKING:
    from trackyard.storage.postgres.gauges import SharedGauges

log = logging.getLogger("trackyard.metrics")

NAME: Final = "metrics"


class GaugesRunner(Runner):
    def __init__(self, backends: Backends) -> None:
        # Opened on the first write: status readers open this runner too, for its position.
        self._shared: SharedGauges | None = None
        super().__init__(NAME, backends.log, NoSink(self._close), None, None, RunPolicy())
        self._backends = backends

    def position(self) -> int:
        """It reads nothing: never behind."""
        return self._log.head_seq()

    def run(self) -> None:
        settings = self._backends.settings
        log.info("metrics: reading the store gauges every %ds", settings.metrics_interval_seconds)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.write_once()
            except Exception:  # a store briefly unreachable: the file ages, the next round tries again
                log.exception("metrics: reading the store gauges failed; trying again")
            self.stop.wait(max(settings.metrics_interval_seconds - (time.monotonic() - started), 0.1))
        log.info("metrics: stopped")

    def write_once(self) -> None:
        settings = self._backends.settings
        if self._shared is None:
            self._shared = shared_gauges(settings)
        write_store_gauges(settings, read_store_gauges(settings, self._backends), self._shared)

    def _close(self) -> None:
        if self._shared is not None:
            self._shared.close()


def open_runner(backends: Backends) -> Runner:
    """The registry's entry."""
    return GaugesRunner(backends)

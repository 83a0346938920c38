"""What a scrape of ``GET /metrics`` returns: the workers' counts and the stores' gauges.

The store gauges come from the cache the ``metrics`` consumer writes (trackyard.metrics.gauges):
a scrape formats the counters and appends that file, and never queries a store.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest, multiprocess, values

from trackyard.config import Settings
from trackyard.metrics.gauges import CachedGauges
from trackyard.metrics.instruments import Metrics
from trackyard.metrics.processes import multiprocess_dir


class Exposition:
    """One worker's instruments, and the registry a scrape renders.

    Under ``serve`` (multiprocess mode) the instruments write to files and a scrape sums
    every worker's; otherwise (an app made in-process) they live in this registry alone.
    """

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        directory = multiprocess_dir()
        if directory is None:
            self.metrics = Metrics(self.registry)
        else:
            # The value store is chosen when prometheus_client is imported; choose again in
            # case it was imported before the variable was set.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
            multiprocess.MultiProcessCollector(self.registry, str(directory))  # type: ignore[no-untyped-call]
            self.metrics = Metrics(None)
        self._gauges = CachedGauges(settings)

    def render(self) -> bytes:
        """The text format (version 0.0.4), which every Prometheus scrapes."""
        return generate_latest(self.registry) + self._gauges.text()

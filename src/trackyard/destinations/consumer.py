"""The ``destinations`` consumer: one runner a destination, each with its own cursor.

The consumer registry names its consumers statically and the supervisor runs one process
each, while destinations come and go at run time; so one ``destinations`` process runs
every enabled destination, each on a :class:`~trackyard.consumers.runner.Runner` of its
own in a thread of its own, with its cursor and dead letters under
``destination:NAME``. A destination that is down or slow holds back only its own thread
(the threads wait on the network, not on the GIL). The registry is read again every
second: a destination added, changed, disabled or removed takes effect without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from trackyard.consumers.runner import NoSink, Runner, RunPolicy, StopFlag
from trackyard.destinations.delivery import DeliveryPolicy, DestinationSink
from trackyard.storage.destinations import Destination, DestinationRegistry
from trackyard.storage.factory import Backends, open_destinations

NAME = "destinations"
log = logging.getLogger("trackyard.destinations")

#: Seconds between reads of the registry.
_RELOAD = 1.0


@dataclass
class _Running:
    destination: Destination
    runner: Runner
    thread: threading.Thread


def open_sink(
    backends: Backends, registry: DestinationRegistry, destination: Destination, stop: StopFlag
) -> DestinationSink:
    def names() -> dict[int, str]:
        return {source.id: source.name for source in backends.sources.sources()}

    return DestinationSink(
        destination, registry, backends.dead_letters(), names, stop, DeliveryPolicy.from_env()
    )


def open_runner_for(
    backends: Backends, registry: DestinationRegistry, destination: Destination, stop: StopFlag | None = None
) -> Runner:
    """One destination's runner, its batches as large as the destination's batch size."""
    stop = stop or StopFlag()
    sink = open_sink(backends, registry, destination, stop)
    # The sink retries and dead-letters by itself; the runner's own retry is for the unexpected.
    policy = RunPolicy(batch_size=max(destination.batch_size, 100), poll_interval=0.1)
    return Runner(
        destination.consumer, backends.log, sink, backends.cursors(), backends.dead_letters(), policy, stop
    )


class DestinationsRunner(Runner):
    """What the registry opens: :meth:`run` keeps one thread a destination until stopped."""

    def __init__(self, backends: Backends) -> None:
        registry = open_destinations(backends.settings)
        super().__init__(
            NAME,
            backends.log,
            NoSink(registry.close),
            backends.cursors(),
            backends.dead_letters(),
            RunPolicy(),
        )
        self._backends = backends
        self._registry = registry
        self._running: dict[str, _Running] = {}

    def position(self) -> int:
        """The cursor of the enabled destination furthest behind (the head when there is none)."""
        cursors = self._backends.cursors()
        positions = [cursors.get(d.consumer) for d in self._registry.destinations() if d.enabled]
        return min(positions) if positions else self._log.head_seq()

    def run(self) -> None:
        log.info("destinations: starting")
        try:
            while not self.stop.is_set():
                self._reconcile(self._registry.destinations())
                self.stop.wait(_RELOAD)
        finally:
            self._reconcile(())  # each thread finishes its request in hand and stops
        log.info("destinations: stopped")

    def _reconcile(self, destinations: Sequence[Destination]) -> None:
        wanted = {d.name: d for d in destinations if d.enabled}
        for name, running in list(self._running.items()):
            if wanted.get(name) != running.destination or not running.thread.is_alive():
                running.runner.stop.set()
                running.thread.join()
                running.runner.sink.close()
                del self._running[name]
        for name, destination in wanted.items():
            if name not in self._running:
                runner = open_runner_for(self._backends, self._registry, destination)
                thread = threading.Thread(target=runner.run, name=f"destination-{name}", daemon=True)
                thread.start()
                self._running[name] = _Running(destination, runner, thread)


def open_runner(backends: Backends) -> Runner:
    """The registry's entry."""
    return DestinationsRunner(backends)

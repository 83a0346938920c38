"""The destinations family of consumers: a process a destination, each with its own cursor.

Each enabled destination is a consumer of its own, ``destination:NAME``: its cursor, its
dead letters and its lease are under that name, and the supervisor runs it in a process
of its own (restarted when it dies). The supervisor asks :func:`members` every second
which destinations are enabled and how each is configured (its ``revision``), so a
destination added, changed, disabled or removed starts, restarts or stops without a
restart of the server, the first one of a data dir included. A destination that is slow,
hung or crashing holds back only its own process.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import astuple, replace

from trackyard.config import Settings
from trackyard.consumers.registry import ConsumerSpec
from trackyard.consumers.runner import Runner, RunPolicy, StopFlag
from trackyard.destinations.delivery import DeliveryPolicy, DestinationSink
from trackyard.destinations.kinds import kind_of
from trackyard.storage.destinations import Destination, DestinationRegistry, NoSuchDestination
from trackyard.storage.factory import Backends, destinations_exist, open_destinations

PREFIX = "destination:"
log = logging.getLogger("trackyard.destinations")


def open_sink(
    backends: Backends,
    registry: DestinationRegistry,
    destination: Destination,
    stop: StopFlag,
    *,
    owns_registry: bool = False,
) -> DestinationSink:
    def names() -> dict[int, str]:
        return {source.id: source.name for source in backends.sources.sources()}

    return DestinationSink(
        destination,
        registry,
        backends.dead_letters(),
        names,
        stop,
        DeliveryPolicy.from_env(),
        close_registry=owns_registry,
    )


def open_runner_for(
    backends: Backends,
    registry: DestinationRegistry,
    destination: Destination,
    stop: StopFlag | None = None,
    *,
    owns_registry: bool = False,
) -> Runner:
    """One destination's runner, its reads as large as the destination's batch size or its kind's read."""
    stop = stop or StopFlag()
    sink = open_sink(backends, registry, destination, stop, owns_registry=owns_registry)
    # The sink retries and dead-letters by itself; the runner's own retry is for the unexpected.
    policy = RunPolicy(
        batch_size=max(destination.batch_size, kind_of(destination.kind).read_batch), poll_interval=0.05
    )
    return Runner(
        destination.consumer, backends.log, sink, backends.cursors(), backends.dead_letters(), policy, stop
    )


def open_runner(backends: Backends, consumer: str) -> Runner:
    """The runner of consumer ``destination:NAME`` (its process opens it), the registry its own."""
    registry = open_destinations(backends.settings)
    try:
        destination = registry.get(consumer.removeprefix(PREFIX))
    except NoSuchDestination:
        registry.close()
        raise NoSuchDestination(f"no destination {consumer.removeprefix(PREFIX)!r} (removed?)") from None
    return open_runner_for(backends, registry, destination, owns_registry=True)


def revision(destination: Destination) -> str:
    """Changes whenever anything the delivery uses does (so the supervisor restarts it)."""
    return hashlib.sha256(repr(astuple(replace(destination, created_at_ms=0))).encode()).hexdigest()[:16]


def member(consumer: str) -> ConsumerSpec:
    return ConsumerSpec(
        consumer,
        f"delivers events to destination {consumer.removeprefix(PREFIX)}",
        lambda backends: open_runner(backends, consumer),
    )


def _destinations(settings: Settings) -> list[Destination]:
    if not destinations_exist(settings):  # never create the registry just to look
        return []
    registry = open_destinations(settings)
    try:
        return registry.destinations()
    finally:
        registry.close()


def members(settings: Settings) -> list[ConsumerSpec]:
    """A consumer an enabled destination, as configured now."""
    return [replace(member(d.consumer), revision=revision(d)) for d in _destinations(settings) if d.enabled]


def configured(settings: Settings) -> list[str]:
    """Every destination's consumer name, enabled or not."""
    return [d.consumer for d in _destinations(settings)]

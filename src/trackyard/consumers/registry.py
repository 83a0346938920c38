"""The consumers there are, by name. A new consumer (a destination, the warehouse loader)
adds one entry: a function that opens its runner over the configured backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trackyard.config import Settings
from trackyard.consumers.runner import Runner
from trackyard.storage.factory import Backends


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    name: str
    description: str
    open_runner: Callable[[Backends], Runner]
    #: Whether the consumer runs when no names are given (``serve``, a bare ``consume``).
    enabled: Callable[[Settings], bool] = lambda settings: True


def _profiles(backends: Backends) -> Runner:
    from trackyard.profiles.consumer import open_runner  # profiles import the framework, not back

    return open_runner(backends)


def _warehouse(backends: Backends) -> Runner:
    from trackyard.warehouse.consumer import open_runner

    return open_runner(backends)


def _destinations(backends: Backends) -> Runner:
    from trackyard.destinations.consumer import open_runner

    return open_runner(backends)


def _retention(backends: Backends) -> Runner:
    from trackyard.retention.consumer import open_runner

    return open_runner(backends)


def _has_destinations(settings: Settings) -> bool:
    from trackyard.storage.factory import destinations_exist

    return destinations_exist(settings)


CONSUMERS: dict[str, ConsumerSpec] = {
    spec.name: spec
    for spec in (
        ConsumerSpec("profiles", "builds people and accounts from the log (docs/profiles.md)", _profiles),
        ConsumerSpec(
            "warehouse",
            "loads Segment's warehouse tables (docs/warehouse.md); runs when TRACKYARD_WAREHOUSE is set",
            _warehouse,
            enabled=lambda settings: settings.warehouse_url is not None,
        ),
        ConsumerSpec(
            "destinations",
            "delivers events onward, a runner a destination (docs/destinations.md); runs once one is added",
            _destinations,
            enabled=_has_destinations,
        ),
        ConsumerSpec(
            "retention",
            "compacts the cold log and drops what is past TRACKYARD_RETENTION(_SIZE) (docs/storage.md)",
            _retention,
        ),
    )
}


class UnknownConsumer(ValueError):
    pass


def resolve(names: Sequence[str], settings: Settings | None = None) -> list[ConsumerSpec]:
    """The consumers named (the enabled ones when none), or :class:`UnknownConsumer` naming the known ones."""
    if not names:
        return [spec for spec in CONSUMERS.values() if settings is None or spec.enabled(settings)]
    unknown = [name for name in names if name not in CONSUMERS]
    if unknown:
        raise UnknownConsumer(
            f"no consumer named {', '.join(map(repr, unknown))}; there are: {', '.join(CONSUMERS)}"
        )
    return [CONSUMERS[name] for name in dict.fromkeys(names)]

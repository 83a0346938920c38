"""The consumers there are, by name. A new consumer (a destination, the warehouse loader)
adds one entry: a function that opens its runner over the configured backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trackyard.consumers.runner import Runner
from trackyard.storage.factory import Backends


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    name: str
    description: str
    open_runner: Callable[[Backends], Runner]


def _profiles(backends: Backends) -> Runner:
    from trackyard.profiles.consumer import open_runner  # profiles import the framework, not back

    return open_runner(backends)


CONSUMERS: dict[str, ConsumerSpec] = {
    spec.name: spec
    for spec in (
        ConsumerSpec("profiles", "builds people and accounts from the log (docs/profiles.md)", _profiles),
    )
}


class UnknownConsumer(ValueError):
    pass


def resolve(names: Sequence[str]) -> list[ConsumerSpec]:
    """The consumers named (all of them when none), or :class:`UnknownConsumer` naming the known ones."""
    if not names:
        return list(CONSUMERS.values())
    unknown = [name for name in names if name not in CONSUMERS]
    if unknown:
        raise UnknownConsumer(
            f"no consumer named {', '.join(map(repr, unknown))}; there are: {', '.join(CONSUMERS)}"
        )
    return [CONSUMERS[name] for name in dict.fromkeys(names)]

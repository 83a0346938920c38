"""The consumers there are, by name.

Two sorts: a fixed consumer (profiles, the warehouse loader) is one entry, a function that
opens its runner over the configured backends. A *family* (the destinations) has one
member a thing configured at run time (``destination:NAME``, a destination each): the
supervisor asks the family for its members again every second, so members added, changed
or removed start and stop without a restart, each in a process of its own.
"""

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
    #: Changes when the member's configuration does: the supervisor restarts it then.
    revision: str = ""
    #: Whether it follows the log (retention and the metrics reader do not: they hold nothing back).
    reads_log: bool = True
    #: Whether its sink keeps its own cursor, which the runner mirrors into the cursor store:
    #: a reader may take a running consumer's position there instead of opening its store.
    mirrored: bool = False


@dataclass(frozen=True, slots=True)
class ConsumerFamily:
    """Consumers that come and go at run time, named ``PREFIX + member``."""

    name: str
    description: str
    prefix: str
    #: The members that should run now (enabled ones), read from their configuration.
    members: Callable[[Settings], list[ConsumerSpec]]
    #: Every configured member's consumer name, enabled or not (for status).
    configured: Callable[[Settings], list[str]]
    #: The spec of one member by its consumer name (the child process opens it this way).
    member: Callable[[str], ConsumerSpec]


def _profiles(backends: Backends) -> Runner:
    from trackyard.profiles.consumer import open_runner  # profiles import the framework, not back

    return open_runner(backends)


def _warehouse(backends: Backends) -> Runner:
    from trackyard.warehouse.consumer import open_runner

    return open_runner(backends)


def _warehouse_enabled(settings: Settings) -> bool:
    from trackyard.warehouse.loader import enabled

    return enabled(settings.warehouse_url)


def _retention(backends: Backends) -> Runner:
    from trackyard.retention.consumer import open_runner

    return open_runner(backends)


def _retention_available(settings: Settings) -> bool:
    from trackyard.storage.factory import maintenance_available

    return maintenance_available(settings)


def _metrics(backends: Backends) -> Runner:
    from trackyard.metrics.consumer import open_runner

    return open_runner(backends)


def _metrics_enabled(settings: Settings) -> bool:
    return settings.metrics


def _destination_members(settings: Settings) -> list[ConsumerSpec]:
    from trackyard.destinations.consumer import members

    return members(settings)


def _destination_names(settings: Settings) -> list[str]:
    from trackyard.destinations.consumer import configured

    return configured(settings)


def _destination_member(name: str) -> ConsumerSpec:
    from trackyard.destinations.consumer import member

    return member(name)


CONSUMERS: dict[str, ConsumerSpec] = {
    spec.name: spec
    for spec in (
        ConsumerSpec(
            "profiles", "builds people and accounts from the log (docs/profiles.md)", _profiles, mirrored=True
        ),
        ConsumerSpec(
            "warehouse",
            "loads Segment's warehouse tables (docs/warehouse.md); off with TRACKYARD_WAREHOUSE=off",
            _warehouse,
            enabled=_warehouse_enabled,
            mirrored=True,
        ),
        ConsumerSpec(
            "retention",
            "compacts the cold log and drops what is past TRACKYARD_RETENTION(_SIZE) (docs/storage.md)",
            _retention,
            enabled=_retention_available,
            reads_log=False,
        ),
        ConsumerSpec(
            "metrics",
            "reads the store gauges /metrics serves (lag, sizes, destinations) every "
            "TRACKYARD_METRICS_INTERVAL_SECONDS (docs/metrics.md); off with --no-metrics",
            _metrics,
            enabled=_metrics_enabled,
            reads_log=False,
        ),
    )
}

FAMILIES: dict[str, ConsumerFamily] = {
    family.name: family
    for family in (
        ConsumerFamily(
            "destinations",
            "delivers events onward, a process a destination, each its consumer destination:NAME "
            "(docs/destinations.md)",
            "destination:",
            _destination_members,
            _destination_names,
            _destination_member,
        ),
    )
}


class UnknownConsumer(ValueError):
    pass


def _family_of(name: str) -> ConsumerFamily | None:
    for family in FAMILIES.values():
        if name.startswith(family.prefix) and len(name) > len(family.prefix):
            return family
    return None


def known_names() -> list[str]:
    return [*CONSUMERS, *FAMILIES, *(f"{family.prefix}NAME" for family in FAMILIES.values())]


def check_names(names: Sequence[str]) -> None:
    """:class:`UnknownConsumer` naming the known ones, for a name that is none of them."""
    unknown = [n for n in names if n not in CONSUMERS and n not in FAMILIES and _family_of(n) is None]
    if unknown:
        raise UnknownConsumer(
            f"no consumer named {', '.join(map(repr, unknown))}; there are: {', '.join(known_names())}"
        )


def resolve(names: Sequence[str], settings: Settings | None = None) -> list[ConsumerSpec]:
    """The fixed consumers named (the enabled ones when none), or :class:`UnknownConsumer`.

    Families are left out: :func:`wanted` expands them into their members of the moment.
    """
    check_names(names)
    if not names:
        return [spec for spec in CONSUMERS.values() if settings is None or spec.enabled(settings)]
    return [CONSUMERS[name] for name in dict.fromkeys(names) if name in CONSUMERS]


def chosen_families(names: Sequence[str]) -> list[str]:
    """The families and family members named (every family when no names are given)."""
    if not names:
        return list(FAMILIES)
    return [n for n in dict.fromkeys(names) if n in FAMILIES or _family_of(n) is not None]


def wanted(names: Sequence[str], settings: Settings) -> list[ConsumerSpec]:
    """What should run now for ``names`` (all when none): the fixed consumers, and each
    named family's (or named member's) members as configured at this moment."""
    specs = resolve(names, settings)
    members: dict[str, list[ConsumerSpec]] = {}
    for name in chosen_families(names):
        family = FAMILIES.get(name) or _family_of(name)
        assert family is not None
        if family.name not in members:
            members[family.name] = family.members(settings)
        specs += [m for m in members[family.name] if name in FAMILIES or m.name == name]
    return list({spec.name: spec for spec in specs}.values())


def spec_named(name: str) -> ConsumerSpec:
    """One consumer's spec by name, a family member's included (for its process)."""
    if name in CONSUMERS:
        return CONSUMERS[name]
    family = _family_of(name)
    if family is None:
        check_names([name])
        raise AssertionError(name)  # pragma: no cover: check_names raised
    return family.member(name)

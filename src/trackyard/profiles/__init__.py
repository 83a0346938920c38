"""Profiles: the people and accounts behind the events, built by a consumer of the log (issue 4)."""

from __future__ import annotations

from collections.abc import Callable

from trackyard.config import Settings


def start_consumer(settings: Settings) -> Callable[[], None] | None:
    """Start the profile consumer for this server process; return a function that stops it.

    Called from the app's lifespan. ``None`` when this process does not run a consumer.
    """
    from trackyard.profiles.consumer import start

    return start(settings)

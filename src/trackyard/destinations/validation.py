"""What makes a destination acceptable, for the command line and the admin API alike."""

from __future__ import annotations

from trackyard.destinations.requests import MAX_WEBHOOK_BATCH
from trackyard.storage.destinations import KINDS, PLANNED_KINDS, Destination, check_name


class InvalidDestination(ValueError):
    """``field``: the option or JSON field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check(destination: Destination) -> None:
    """:class:`InvalidDestination` saying what to change, or nothing."""
    try:
        check_name(destination.name)
    except ValueError as error:
        raise InvalidDestination("name", str(error)) from None
    if destination.kind in PLANNED_KINDS:
        raise InvalidDestination(
            "format",
            f"The {destination.kind} format is planned and not available yet; use webhook or segment.",
        )
    if destination.kind not in KINDS:
        raise InvalidDestination("format", f"{destination.kind!r} is not one of {', '.join(KINDS)}")
    if not destination.url.startswith(("http://", "https://")):
        raise InvalidDestination("url", f"{destination.url!r} is not an http:// or https:// URL")
    if destination.kind == "segment" and not destination.key:
        raise InvalidDestination("key", "the segment format needs the receiver's write key")
    if not 1 <= destination.batch_size <= MAX_WEBHOOK_BATCH:
        raise InvalidDestination("batch_size", f"the batch size is 1 to {MAX_WEBHOOK_BATCH}")

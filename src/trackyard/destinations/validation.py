"""What makes a destination acceptable, for the command line and the admin API alike."""

from __future__ import annotations

from trackyard.destinations.kinds.webhook import MAX_WEBHOOK_BATCH
from trackyard.storage.destinations import KINDS, Destination, check_name

#: What ``--key`` is, by format.
_KEY_NAMES = {
    "segment": "the receiver's write key",
    "koala": "the Koala public project key",
    "bloomreach": "the Bloomreach project token",
    "vitally": "the Vitally token",
}


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
    if destination.kind not in KINDS:
        raise InvalidDestination("format", f"{destination.kind!r} is not one of {', '.join(KINDS)}")
    if not destination.url.startswith(("http://", "https://")):
        raise InvalidDestination("url", f"{destination.url!r} is not an http:// or https:// URL")
    if destination.kind != "webhook" and not destination.key:
        raise InvalidDestination("key", f"the {destination.kind} format needs {_KEY_NAMES[destination.kind]}")
    if destination.secret and destination.kind not in ("webhook", "bloomreach"):
        raise InvalidDestination(
            "secret", f"the {destination.kind} format takes no secret (only webhook and bloomreach do)"
        )
    if not 1 <= destination.batch_size <= MAX_WEBHOOK_BATCH:
        raise InvalidDestination("batch_size", f"the batch size is 1 to {MAX_WEBHOOK_BATCH}")

"""The refusals of the ingest path, free of any transport: a machine code and a human message.

The HTTP layer (``trackyard.http.answers``) maps codes to statuses and to each vendor's
answer shape; nothing below it knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class IngestError(Exception):
    """A request that is refused as a whole: machine code, human message.

    ``retry_after`` (seconds) is set when retrying later can succeed. ``write_keys`` are the
    keys a decoder found in a body it then refused, so that the refusal can still be kept
    for its source; on an authentication refusal, the key refused (never stored: the
    bounded reject of ``trackyard.ingest.auth_failures`` keeps only its fingerprint).
    ``parts`` are set when a format keeps a refused batch as one reject per
    message rather than one for the whole body; ``errors`` list the refused items
    (``{index, code, message}``) when a format answers with them. ``of_event`` says the
    request was refused because its one event broke the rules, not because of the request.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        write_keys: Sequence[str] = (),
        parts: Sequence[bytes] = (),
        errors: Sequence[dict[str, Any]] = (),
        of_event: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.write_keys = write_keys
        self.parts = parts
        self.errors = errors
        self.of_event = of_event


class CallError(Exception):
    """One event that breaks the spec. In a batch it is rejected alone; on a single route it is a 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreUnavailable(Exception):
    """The store cannot take writes right now (disk full, I/O error, shutting down)."""


class Overloaded(Exception):
    """More events are waiting for the writer than the configured bound allows."""

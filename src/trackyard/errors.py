"""The errors the ingest path raises, each carrying the answer the client gets."""

from __future__ import annotations


class IngestError(Exception):
    """A request that is refused as a whole: HTTP status, machine code, human message."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


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

"""JSON helpers every wire format shares: one decoder, and errors that read the same."""

from __future__ import annotations

from typing import Any

import msgspec

from trackyard.errors import CallError, IngestError

_decoder = msgspec.json.Decoder()


def decode_json(body: bytes) -> Any:
    """Decode a whole body; a 400 ``invalid_json`` saying why when it is not JSON."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_json(exc) from None


def decode_item(raw: msgspec.Raw) -> Any:
    """Decode one item of a batch that was already scanned as valid JSON."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # pragma: no cover - the batch decode already checked it
        raise CallError("invalid_json", str(exc)) from None


def invalid_json(exc: Exception) -> IngestError:
    return IngestError(400, "invalid_json", f"The body is not valid JSON: {exc}.")


def json_type(value: object) -> str:
    """The JSON type of a decoded value, worded for error messages ("an array")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else "null"

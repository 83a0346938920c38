"""JSON helpers every wire format shares: one decoder, and errors that read the same."""

from __future__ import annotations

from typing import Any

import msgspec

from trackyard.errors import CallError, IngestError

_decoder = msgspec.json.Decoder()

#: Everything msgspec raises on a body it cannot decode. Besides ``DecodeError`` (and its
#: ``ValidationError``), invalid UTF-8 inside a string raises ``UnicodeDecodeError`` and
#: very deep nesting ``RecursionError``: all of them are the client's error, never a 500.
DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_json(body: bytes) -> Any:
    """Decode a whole body; ``invalid_json`` saying why when it is not JSON."""
    try:
        return _decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise invalid_json(exc) from None


def decode_item(raw: msgspec.Raw) -> Any:
    """Decode one item of a batch; the scan of the batch does not check its strings' UTF-8."""
    try:
        return _decoder.decode(raw)
    except DECODE_ERRORS as exc:
        raise CallError("invalid_json", f"The event is not valid JSON: {exc}.") from None


def invalid_json(exc: Exception) -> IngestError:
    return IngestError("invalid_json", f"The body is not valid JSON: {exc}.")


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

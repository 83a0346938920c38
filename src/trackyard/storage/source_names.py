"""Which source names are allowed, checked wherever a source is created.

A name appears in commands (``trackyard sources enable NAME``), in messages and in every
stored event's ``source.name``, so it must be safe to paste into a shell and unambiguous:
no spaces, slashes, quotes or empty names.
"""

from __future__ import annotations

import re
import secrets
import string

_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

ALLOWED = (
    "1 to 64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit "
    "(e.g. web, ios-app, backend_2)"
)


class InvalidSourceName(ValueError):
    """A source name outside :data:`ALLOWED`; the message says what is allowed."""


def check_source_name(name: str) -> str:
    """``name`` itself when it is allowed; else raise :class:`InvalidSourceName`."""
    if _PATTERN.fullmatch(name) is None:
        raise InvalidSourceName(f"Invalid source name {name!r}: a source name is {ALLOWED}.")
    return name


_WRITE_KEY_ALPHABET = string.ascii_letters + string.digits


def generate_write_key() -> str:
    """32 random letters and digits, the shape of a Segment write key."""
    return "".join(secrets.choice(_WRITE_KEY_ALPHABET) for _ in range(32))

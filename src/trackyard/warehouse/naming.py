"""Table and column names as Segment writes them: go-snakecase, then a warehouse-safe length.

Segment converts every collection and property name with its go-snakecase package; this
is a byte-wise port of its current ``snake.go``, checked against the upstream test vectors
(``tests/fixtures/warehouse/go_snakecase.json``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

#: PostgreSQL's identifier limit in bytes; DuckDB has none, but both warehouses must agree.
MAX_NAME_BYTES: Final = 63

#: The tables the loader owns; a track event whose name snake-cases to one of these gets a
#: leading ``_`` (RudderStack's rule), so ``track("users")`` cannot write into ``users``.
STANDARD_TABLES: Final = frozenset(
    {"tracks", "identifies", "users", "pages", "screens", "groups", "accounts", "aliases", "discards"}
)


def _lower(c: int) -> bool:
    return 97 <= c <= 122


def _upper(c: int) -> bool:
    return 65 <= c <= 90


def _digit(c: int) -> bool:
    return 48 <= c <= 57


def _alnum(c: int) -> bool:
    return _lower(c) or _upper(c) or _digit(c)


def snakecase(name: str) -> str:
    """go-snakecase's ``Snakecase``: ASCII letters and digits survive, everything else separates."""
    s = name.encode("utf-8")
    n = len(s)
    idx = 0
    has_lower = has_underscore = lower_since_underscore = False
    # The leading run that needs no change: lowercase, digits, and underscores followed by one.
    while idx < n:
        c = s[idx]
        if _lower(c):
            has_lower = True
            if has_underscore:
                lower_since_underscore = True
        elif _digit(c):
            pass
        elif c == 95 and 0 < idx < n - 1 and (_lower(s[idx + 1]) or _digit(s[idx + 1])):
            has_underscore = True
            lower_since_underscore = False
        else:
            break
        idx += 1
    if idx == n:
        return name
    out = bytearray(s[:idx])
    if _upper(s[idx]) and (not has_lower or (has_underscore and not lower_since_underscore)):
        idx = _word(s, idx, out)
    while idx < n:
        if not _alnum(s[idx]):
            idx += 1
            continue
        if out:
            out.append(95)
        idx = _word(s, idx, out)
    return out.decode("ascii")


def _word(s: bytes, idx: int, out: bytearray) -> int:
    """Append one token (capitals and digits, then lowercase and digits) lowercased; return the end."""
    n = len(s)
    while idx < n and (_upper(s[idx]) or _digit(s[idx])):
        out.append(s[idx] | 0x20 if _upper(s[idx]) else s[idx])
        idx += 1
    while idx < n and (_lower(s[idx]) or _digit(s[idx])):
        out.append(s[idx])
        idx += 1
    return idx


def fit(name: str) -> str:
    """Cut a name to ``MAX_NAME_BYTES`` with a hash suffix, so two long names never collide silently."""
    if len(name) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME_BYTES - 9]}_{digest}"


# Cached: the same few hundred key paths recur in every batch, and snakecase is byte-wise Python.
@lru_cache(maxsize=65536)
def column_name(path: str) -> str:
    """The column for a flattened key path (``context.app.version`` → ``context_app_version``)."""
    return fit(snakecase(path))


@lru_cache(maxsize=65536)
def event_table(event_name: str) -> str:
    """The table for a track event's name, ``""`` when the name has no ASCII letter or digit."""
    name = snakecase(event_name)
    if not name:
        return ""
    # go-snakecase never starts a name with "_", so "_users" and "_trackyard_loads" are free.
    if name in STANDARD_TABLES:
        name = "_" + name
    return fit(name)

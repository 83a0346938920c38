"""Durations (``30d``, ``12h``) and sizes (``50GB``, ``512MiB``) as settings and options take them."""

from __future__ import annotations

import re

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
# Decimal units as disks are sold (GB = 10^9), binary ones as `du -h` shows them (GiB = 2^30).
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_NONE = ("", "0", "forever", "none", "off")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds; 0 for ``forever``."""
    if text.strip().lower() in _NONE:
        return 0
    match = _NUMBER.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _DURATION_UNITS):
        raise ValueError(f"{text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w or forever")
    return int(float(match.group(1)) * _DURATION_UNITS.get(unit, 1))


def parse_size(text: str) -> int:
    """Bytes in ``50GB``, ``500MB``, ``2TiB`` or plain bytes; 0 for ``none``."""
    if text.strip().lower() in _NONE:
        return 0
    match = _NUMBER.match(text)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: use e.g. 50GB, 500MB, 2TiB or none")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_duration(seconds: int) -> str:
    if seconds <= 0:
        return "forever"
    for unit in ("w", "d", "h", "m"):
        if seconds % _DURATION_UNITS[unit] == 0:
            return f"{seconds // _DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


def format_size(size: int) -> str:
    if size <= 0:
        return "none"
    for unit in ("TB", "GB", "MB", "kB"):
        scale = _SIZE_UNITS[unit.lower()]
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"

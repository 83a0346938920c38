"""Rows for Segment's warehouse tables from canonical events, and the column type rules.

One canonical event becomes one row in its call's table (``tracks``, ``identifies`` ...),
plus a row in its event's own table (track), in ``users`` (identify with a userId) or in
``accounts`` (group). Objects are flattened with ``_``, arrays are kept as JSON text.

Types (the rule ``docs/warehouse.md`` documents): a column's type is the type of the first
non-null value it gets. A later value is converted only where that loses nothing: any
scalar into a ``text`` column (as its JSON text), an integer into a ``double`` column, and
a ``bigint`` column widens to ``double`` when a fractional number arrives. Any other value
is not loaded; it goes to ``discards`` with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

import msgspec

from trackyard.event import parse_timestamp
from trackyard.warehouse.naming import column_name, event_table

ColumnType = Literal["bigint", "double", "boolean", "timestamp", "text"]

#: RudderStack refuses events with more than 200 columns; here a table stops growing at 200
#: and values for further columns go to discards.
MAX_COLUMNS: Final = 200

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

#: What counts as a timestamp in a string: ISO-8601 with a date, a time and an offset or Z,
#: as SDKs send them; anything looser stays text.
_TIMESTAMP: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})\Z")

#: Columns every table has; their types are fixed, not inferred.
_META: Final[dict[str, ColumnType]] = {
    "id": "text",
    "received_at": "timestamp",
    "uuid_ts": "timestamp",
    "source_name": "text",
    "source_format": "text",
}
_CALL: Final[dict[str, ColumnType]] = {
    **_META,
    "sent_at": "timestamp",
    "timestamp": "timestamp",
    "original_timestamp": "timestamp",
    "user_id": "text",
    "anonymous_id": "text",
}
_TRACK: Final[dict[str, ColumnType]] = {**_CALL, "event": "text", "event_text": "text"}

#: The reserved (fixed) columns of each standard table; event tables use ``_TRACK``.
RESERVED: Final[dict[str, dict[str, ColumnType]]] = {
    "tracks": _TRACK,
    "identifies": _CALL,
    "users": _META,
    "pages": {**_CALL, "name": "text"},
    "screens": {**_CALL, "name": "text"},
    "groups": {**_CALL, "group_id": "text"},
    "accounts": {**_META, "user_id": "text"},
    "aliases": {**_CALL, "previous_id": "text"},
    "discards": {
        "row_id": "text",
        "table_name": "text",
        "column_name": "text",
        "column_value": "text",
        "reason": "text",
        "received_at": "timestamp",
        "uuid_ts": "timestamp",
    },
}

#: Tables holding the latest state per id (traits coalesced), not one row per event.
LATEST_TABLES: Final = frozenset({"users", "accounts"})


def reserved_columns(table: str) -> dict[str, ColumnType]:
    return RESERVED.get(table, _TRACK)


def key_columns(table: str) -> tuple[str, ...]:
    """What identifies a row: ``id``, except in discards (one row per value refused)."""
    return ("row_id", "table_name", "column_name") if table == "discards" else ("id",)


class Discard(msgspec.Struct, frozen=True):
    row_id: str
    table_name: str
    column_name: str
    column_value: str
    reason: str
    received_at: str | None


@dataclass(slots=True)
class TableRow:
    table: str
    #: Column → value, reserved columns first; values are raw JSON scalars or JSON text.
    values: dict[str, Any] = field(default_factory=dict)


def infer_type(value: Any) -> ColumnType:
    """The type a new column gets from its first value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if INT64_MIN <= value <= INT64_MAX else "text"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str) and is_timestamp(value):
        return "timestamp"
    return "text"


# Cached: the events of a batch often share their sentAt, receivedAt or timestamp.
@lru_cache(maxsize=8192)
def is_timestamp(value: str) -> bool:
    if not _TIMESTAMP.match(value):
        return False
    try:
        parse_timestamp(value)
    except ValueError:
        return False
    return True


class Refused(Exception):
    """A value that does not fit its column; its message is the discard's reason."""


#: Returned by ``coerce`` when the value fits once the bigint column is widened to double.
WIDEN: Final = object()


def coerce(value: Any, column: ColumnType) -> Any:
    """The value to store in a column of type ``column``, ``WIDEN``, or raise ``Refused``."""
    if column == "text":
        if isinstance(value, str):
            return value
        return msgspec.json.encode(value).decode()
    if column == "boolean":
        if isinstance(value, bool):
            return value
    elif column == "bigint":
        if isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
            return value
        if isinstance(value, float):
            return WIDEN
    elif column == "double":
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            return float(value)
    elif column == "timestamp" and isinstance(value, str) and is_timestamp(value):
        return value
    raise Refused(f"{infer_type(value)} value in a {column} column")


def _flatten(obj: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """``(path, value)`` for each scalar under ``obj``, depth first in JSON order."""
    out: list[tuple[str, Any]] = []
    _flatten_into(obj, prefix, out)
    return out


def _flatten_into(obj: dict[str, Any], prefix: str, out: list[tuple[str, Any]]) -> None:
    for key, value in obj.items():
        if isinstance(value, dict):
            _flatten_into(value, f"{prefix}{key}.", out)
        elif isinstance(value, list):
            out.append((prefix + key, msgspec.json.encode(value).decode()))
        elif value is not None:
            out.append((prefix + key, value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def rows_for(event: dict[str, Any], discards: list[Discard]) -> list[TableRow]:
    """The rows one canonical event writes; fields that cannot be columns are added to ``discards``."""
    kind = event.get("type")
    message_id = str(event.get("messageId", ""))
    source = _dict(event.get("source"))
    meta = {
        "id": message_id,
        "received_at": event.get("receivedAt"),
        "source_name": source.get("name"),
        "source_format": source.get("format"),
    }
    call = {
        **meta,
        "sent_at": event.get("sentAt"),
        "timestamp": event.get("timestamp"),
        "original_timestamp": event.get("originalTimestamp"),
        "user_id": event.get("userId"),
        "anonymous_id": event.get("anonymousId"),
    }
    context = _flatten(_dict(event.get("context")), "context.")
    properties = _flatten(_dict(event.get("properties")), "")
    traits = _flatten(_dict(event.get("traits")), "")
    received_at = event.get("receivedAt")
    rows: list[TableRow] = []

    def extend(out: TableRow, *fields: list[tuple[str, Any]]) -> None:
        reserved = reserved_columns(out.table)
        values = out.values
        for group in fields:
            for path, value in group:
                name = column_name(path)
                if name and name not in reserved and name not in values:
                    values[name] = value
                    continue
                reason = (
                    "name has no ASCII letter or digit"
                    if not name
                    else f"collides with the reserved column {name}"
                    if name in reserved
                    else f"another field already maps to the column {name}"
                )
                discards.append(_discard(message_id, out.table, name or path, value, reason, received_at))

    def row(table: str, fixed: dict[str, Any], *fields: list[tuple[str, Any]]) -> TableRow:
        out = TableRow(table, {k: v for k, v in fixed.items() if v is not None})
        extend(out, *fields)
        rows.append(out)
        return out

    if kind == "track":
        name = event.get("event")
        track = {**call, "event": event_table(name) if isinstance(name, str) else None, "event_text": name}
        seen = len(discards)
        tracks = row("tracks", track, context)
        table = track["event"]
        if table:
            # The event's table has tracks' reserved columns: its row is tracks' row plus the
            # properties, and the context's discards again under its own name.
            own = TableRow(table, dict(tracks.values))
            discards.extend(msgspec.structs.replace(d, table_name=table) for d in discards[seen:])
            extend(own, properties)
            rows.append(own)
        else:
            discards.append(
                _discard(message_id, "tracks", "event", name, "event name gives no table name", received_at)
            )
    elif kind == "identify":
        row("identifies", call, context, traits)
        if event.get("userId"):
            row("users", {**meta, "id": event["userId"]}, traits)
    elif kind in ("page", "screen"):
        row(f"{kind}s", {**call, "name": event.get("name")}, context, properties)
    elif kind == "group":
        row("groups", {**call, "group_id": event.get("groupId")}, context, traits)
        if event.get("groupId"):
            row("accounts", {**meta, "id": event["groupId"], "user_id": event.get("userId")}, traits)
    elif kind == "alias":
        row("aliases", {**call, "previous_id": event.get("previousId")}, context)
    return rows


def _discard(row_id: str, table: str, column: str, value: Any, reason: str, received_at: Any) -> Discard:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return Discard(row_id, table, column, text, reason, received_at if isinstance(received_at, str) else None)

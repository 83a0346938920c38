"""Type rules, discards, limits and merges, loaded into a real DuckDB file batch by batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.warehouse.conftest import dump
from trackyard.consumers.runner import Interrupted, StopFlag
from trackyard.storage.base import StoredEvent
from trackyard.warehouse import WarehouseSink
from trackyard.warehouse.loader import MAX_TABLES_PER_TRANSACTION
from trackyard.warehouse.schema import MAX_COLUMNS, Refused, coerce, infer_type

SOURCE = {"id": 1, "name": "web", "format": "segment", "route": "/v1/batch"}


class Feed:
    """Builds stored events with increasing seqs, as the log would hand them out."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, *events: dict[str, Any]) -> list[StoredEvent]:
        out = []
        for e in events:
            self.seq += 1
            body: dict[str, Any] = {
                "messageId": f"m{self.seq}",
                "receivedAt": f"2024-01-01T00:00:{self.seq % 60:02d}.000Z",
            }
            body.update(e)
            body.setdefault("source", SOURCE)
            out.append(StoredEvent(self.seq, 1, body["type"], msgspec.json.encode(body)))
        return out


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[WarehouseSink]:
    s = WarehouseSink.open(None, tmp_path)
    yield s
    s.close()


def rows(sink: WarehouseSink, sql: str) -> list[tuple[Any, ...]]:
    return sink.backend.query(sql)[1]


def track(props: dict[str, Any], event: str = "Order Completed", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": event, "properties": props, **extra}


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (True, "boolean"),
        (3, "bigint"),
        (2**63, "text"),
        (1.5, "double"),
        ("2024-01-01T00:00:00.000Z", "timestamp"),
        ("2024-01-01T00:00:00+02:00", "timestamp"),
        ("2024-01-01", "text"),
        ("2024-13-01T00:00:00Z", "text"),
        ("hello", "text"),
    ],
)
def test_a_new_columns_type_comes_from_its_first_value(value: Any, type_: str) -> None:
    assert infer_type(value) == type_


def test_only_lossless_conversions_are_made() -> None:
    assert coerce(3, "double") == 3.0
    assert coerce(True, "text") == "true"
    assert coerce(12.5, "text") == "12.5"
    for value, column in [
        ("3", "bigint"),
        (1, "boolean"),
        ("yes", "boolean"),
        ("x", "timestamp"),
        (True, "bigint"),
    ]:
        with pytest.raises(Refused):
            coerce(value, column)  # type: ignore[arg-type]


def test_segment_columns_flattening_and_arrays(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(
        feed(
            track(
                {"product_id": {"sku": "A"}, "products": [{"sku": "A"}], "revenue": 10},
                context={"app": {"version": "1.0"}, "userAgent": "UA"},
                timestamp="2024-01-01T00:00:00.000Z",
            )
        )
    )
    schema = sink.backend.schema()
    assert list(schema["tracks"]) == [
        "id", "received_at", "uuid_ts", "source_name", "source_format", "sent_at", "timestamp",
        "original_timestamp", "user_id", "anonymous_id", "event", "event_text",
        "context_app_version", "context_user_agent",
    ]  # fmt: skip
    assert schema["order_completed"]["product_id_sku"] == "text"
    assert schema["order_completed"]["revenue"] == "bigint"
    sql = "SELECT id, event, event_text, products, source_name, source_format FROM order_completed"
    assert rows(sink, sql) == [
        ("m1", "order_completed", "Order Completed", '[{"sku":"A"}]', "web", "segment")
    ]


def test_bigint_widens_to_double_and_mismatches_go_to_discards(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({"revenue": 10, "coupon": True, "when": "2024-01-01T00:00:00Z"})))
    sink.apply(feed(track({"revenue": 12.5, "coupon": "SPRING", "when": "tomorrow"})))
    assert sink.backend.schema()["order_completed"]["revenue"] == "double"
    assert rows(sink, "SELECT id, revenue, coupon FROM order_completed ORDER BY id") == [
        ("m1", 10.0, True),
        ("m2", 12.5, None),
    ]
    sql = "SELECT row_id, table_name, column_name, column_value, reason FROM discards ORDER BY 3"
    assert rows(sink, sql) == [
        ("m2", "order_completed", "coupon", "SPRING", "text value in a boolean column"),
        ("m2", "order_completed", "when", "tomorrow", "text value in a timestamp column"),
    ]


def test_a_type_conflict_inside_one_batch_follows_the_first_value(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({"n": 1}), track({"n": "one"}), track({"n": 2.5})))
    assert sink.backend.schema()["order_completed"]["n"] == "double"
    assert rows(sink, "SELECT id, n FROM order_completed ORDER BY id") == [
        ("m1", 1.0),
        ("m2", None),
        ("m3", 2.5),
    ]
    assert rows(sink, "SELECT row_id, reason FROM discards") == [("m2", "text value in a bigint column")]


def test_reserved_names_and_name_collisions_are_discarded_not_lost(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({"id": "x", "user_id": "y", "firstName": "A", "first_name": "B", "$": 1})))
    assert rows(sink, "SELECT id, user_id, first_name FROM order_completed") == [("m1", "u1", "A")]
    reasons = rows(sink, "SELECT column_name, column_value, reason FROM discards ORDER BY 1")
    assert reasons == [
        ("$", "1", "name has no ASCII letter or digit"),
        ("first_name", "B", "another field already maps to the column first_name"),
        ("id", "x", "collides with the reserved column id"),
        ("user_id", "y", "collides with the reserved column user_id"),
    ]


def test_a_table_stops_at_the_column_limit_and_the_rest_is_discarded(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({f"p{i}": i for i in range(MAX_COLUMNS + 10)})))
    columns = sink.backend.schema()["order_completed"]
    assert len(columns) == MAX_COLUMNS
    (count,) = rows(sink, "SELECT count(*) FROM discards WHERE reason LIKE '%limit of 200 columns'")[0]
    assert count == MAX_COLUMNS + 10 - (MAX_COLUMNS - 12)  # 12 reserved columns in an event table


def test_new_properties_and_event_names_appear_without_a_restart(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({"a": 1})))
    sink.apply(feed(track({"a": 2, "b": "new"}), track({"c": 1}, event="Signed Up")))
    schema = sink.backend.schema()
    assert "b" in schema["order_completed"] and "signed_up" in schema
    assert rows(sink, "SELECT id, a, b FROM order_completed ORDER BY id") == [
        ("m1", 1, None),
        ("m2", 2, "new"),
    ]


def test_users_and_accounts_keep_one_row_with_the_latest_traits(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed({"type": "identify", "userId": "u1", "traits": {"email": "a@x", "plan": "pro"}}))
    sink.apply(
        feed(
            {"type": "identify", "userId": "u1", "traits": {"plan": "team"}},
            {"type": "identify", "userId": "u1", "traits": {"seats": 4}},
            {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Initech"}},
            {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"employees": 5}},
        )
    )
    assert rows(sink, "SELECT id, email, plan, seats FROM users") == [("u1", "a@x", "team", 4)]
    assert rows(sink, "SELECT id, name, employees FROM accounts") == [("g1", "Initech", 5)]
    assert rows(sink, "SELECT count(*) FROM identifies")[0] == (3,)
    assert rows(sink, "SELECT count(*) FROM groups")[0] == (2,)


def test_event_tables_hold_one_row_per_message_id(sink: WarehouseSink) -> None:
    feed = Feed()
    (first,) = feed(track({"v": 1}))
    again = StoredEvent(5, 1, "track", first.body.replace(b'"v":1', b'"v":2'))
    sink.apply([first])
    sink.apply([again, again])
    assert rows(sink, "SELECT id, v FROM order_completed") == [("m1", 2)]
    assert sink.position() == 5


def test_a_failed_batch_rolls_back_whole_is_reported_and_the_next_try_loads_it(sink: WarehouseSink) -> None:
    feed = Feed()
    sink.apply(feed(track({"a": 1})))
    # Someone drops a table behind the loader's back: the next batch fails inside its transaction.
    sink.backend.query('DROP TABLE "order_completed"')
    batch = feed(track({"a": 2}), {"type": "page", "name": "Home"})
    with pytest.raises(Exception, match="order_completed"):
        sink.apply(batch)
    assert sink.position() == 1
    assert "pages" not in sink.backend.schema()
    error, at = sink.backend.last_error(sink.name)
    assert error is not None and "order_completed" in error and at is not None
    sink.apply(batch)
    assert sink.position() == 3
    assert rows(sink, "SELECT id FROM order_completed") == [("m2",)]
    assert rows(sink, "SELECT id, name FROM pages") == [("m3", "Home")]


def test_reset_and_reload_give_the_same_tables(sink: WarehouseSink) -> None:
    feed = Feed()
    events = feed(
        track({"a": 1}),
        track({"a": 1.5, "b": [1]}),
        {"type": "identify", "userId": "u1", "traits": {"x": 1}},
        {"type": "alias", "userId": "u1", "previousId": "a0"},
        {"type": "screen", "name": "S", "properties": {"q": True}},
    )
    for e in events:
        sink.apply([e])
    incremental = dump(sink.backend)
    sink.reset()
    assert sink.position() == 0 and sink.backend.schema() == {}
    sink.apply(events)
    assert dump(sink.backend) == incremental


def test_a_log_entry_that_is_not_an_object_is_kept_in_discards(sink: WarehouseSink) -> None:
    sink.apply([StoredEvent(1, 1, "track", b"[1,2]")])
    assert rows(sink, "SELECT row_id, column_value, reason FROM discards") == [
        ("1", "[1,2]", "log entry is not a JSON object")
    ]
    assert sink.position() == 1


def test_a_batch_of_many_tables_commits_in_parts_and_a_stop_ends_it_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = StopFlag()
    sink = WarehouseSink.open(None, tmp_path, stop=stop)
    events = Feed()(*(track({"n": i}, event=f"Event {i}") for i in range(250)))
    commit = sink.backend.set_position

    def commit_then_stop(name: str, seq: int) -> None:  # a SIGTERM right after the first part
        commit(name, seq)
        stop.set()

    monkeypatch.setattr(sink.backend, "set_position", commit_then_stop)
    with pytest.raises(Interrupted):
        sink.apply(events)
    sink.close()
    # The first part: tracks and one table per event name, up to the cap; committed with its cursor.
    part = MAX_TABLES_PER_TRANSACTION - 1
    again = WarehouseSink.open(None, tmp_path)
    try:
        assert again.position() == part
        assert rows(again, "SELECT count(*) FROM tracks") == [(part,)]
        # Started again, it loads the rest from its cursor: every event once.
        again.apply(events[part:])
        assert again.position() == 250
        assert rows(again, "SELECT count(*), count(DISTINCT id) FROM tracks") == [(250, 250)]
        assert rows(again, "SELECT n FROM event_249") == [(249,)]
        assert len(again.backend.schema()) == 251
    finally:
        again.close()

"""The same event set, from all four wire formats via a real server, into DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Server
from tests.warehouse.conftest import dump, plain
from trackyard.config import Settings
from trackyard.storage.factory import open_backends
from trackyard.warehouse import WarehouseSink, sync
from trackyard.warehouse._backend import Backend

#: A dbt-style model: orders per user with the user's latest traits (tracks joined with users).
DBT_QUERY = """
WITH orders AS (
    SELECT t.user_id, count(*) AS orders, max(t.received_at) AS last_order_at
    FROM tracks AS t
    WHERE t.event = 'order_completed'
    GROUP BY t.user_id
)
SELECT u.id, u.email, u.plan, o.orders
FROM users AS u
LEFT JOIN orders AS o ON o.user_id = u.id
ORDER BY u.id
"""


def load(event_server: Server, url: str | None, data_dir: Path, batch: int = 1000) -> WarehouseSink:
    backends = open_backends(Settings(data_dir=event_server.data_dir))
    try:
        sink = WarehouseSink.open(url, data_dir, {s.id: s.name for s in backends.sources.sources()})
        sync(backends.log, sink, batch=batch)
    finally:
        backends.close()
    return sink


def q(backend: Backend, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(plain(v) for v in row) for row in backend.query(sql)[1]]


def test_duckdb_and_postgresql_hold_the_same_rows(event_server: Server, tmp_path: Path, pg_dsn: str) -> None:
    duck = load(event_server, None, tmp_path)
    pg = load(event_server, pg_dsn, tmp_path, batch=4)  # small batches: the incremental path
    try:
        assert duck.backend.schema() == pg.backend.schema()
        tables = dump(duck.backend)
        assert tables == dump(pg.backend)
        assert duck.position() == pg.position() == event_server.stored  # type: ignore[attr-defined]
        assert {
            "tracks", "identifies", "users", "pages", "screens", "groups", "accounts", "aliases",
            "order_completed", "pageview", "2fa_enabled", "_users", "viewed_pricing", "purchase",
            "clicked", "discards",
        } <= set(tables)  # fmt: skip
        for sql in [
            DBT_QUERY,
            "SELECT source_format, count(*) FROM tracks GROUP BY 1 ORDER BY 1",
            "SELECT id, revenue, currency, coupon FROM order_completed ORDER BY id",
            "SELECT table_name, column_name, column_value, reason FROM discards ORDER BY 1, 2, 3",
        ]:
            assert q(duck.backend, sql) == q(pg.backend, sql), sql
        assert q(duck.backend, DBT_QUERY) == [
            ("u1", "ann@example.com", "team", 2),
            ("u2", "bo@example.com", None, 1),
        ]
        assert q(duck.backend, "SELECT source_format, count(*) FROM tracks GROUP BY 1 ORDER BY 1") == [
            ("bloomreach", 1),
            ("koala", 1),
            ("segment", 7),
            ("vitally", 1),
        ]
    finally:
        duck.close()
        pg.close()


def test_segments_documented_columns_appear_as_segment_names_them(
    event_server: Server, tmp_path: Path
) -> None:
    sink = load(event_server, None, tmp_path)
    try:
        schema = sink.backend.schema()
        common = {"anonymous_id", "context_ip", "context_library_name", "context_library_version", "id",
                  "received_at", "sent_at", "user_id", "uuid_ts"}  # fmt: skip
        assert common | {"email", "name", "address_street", "address_city"} <= set(schema["identifies"])
        assert common | {"event", "event_text"} <= set(schema["tracks"])
        assert common | {"name", "path", "referrer", "title", "url"} <= set(schema["pages"])
        assert {"context_app_version", "context_user_agent", "context_field_nested_a_nested_b"} <= set(
            schema["tracks"]
        )
        assert {"product_id_sku", "revenue", "products"} <= set(schema["order_completed"])
        assert "anonymous_id" not in schema["users"]
        assert q(sink.backend, "SELECT event, event_text FROM tracks WHERE id = 's-track-5'") == [
            ("2fa_enabled", "2FA Enabled")
        ]
        # The event whose name has no letters or digits is in tracks, and its missing table is a discard.
        assert q(sink.backend, "SELECT column_value, reason FROM discards WHERE row_id = 's-track-7'") == [
            ("•¶§", "event name gives no table name")
        ]
        assert q(sink.backend, "SELECT tags FROM identifies WHERE id = 's-identify-1'") == [('["a","b"]',)]
    finally:
        sink.close()


def test_two_loaders_on_one_postgresql_database_load_each_batch_once(
    event_server: Server, tmp_path: Path, pg_dsn: str
) -> None:
    backends = open_backends(Settings(data_dir=event_server.data_dir))
    first, second = WarehouseSink.open(pg_dsn, tmp_path), WarehouseSink.open(pg_dsn, tmp_path)
    try:
        batch = backends.log.read_events(after=0, limit=6)
        first.apply(batch)
        second.apply(batch)  # behind the first: skipped, not loaded twice
        assert second.position() == first.position() == batch[-1].seq
        sync(backends.log, second)
        sync(backends.log, first)
        assert first.position() == event_server.stored  # type: ignore[attr-defined]
        assert q(first.backend, "SELECT count(*), count(DISTINCT id) FROM identifies") == [(3, 3)]
        assert q(first.backend, "SELECT count(*) FROM tracks") == [(10,)]
    finally:
        first.close()
        second.close()
        backends.close()

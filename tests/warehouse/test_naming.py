"""Names: go-snakecase's upstream vectors, event tables, and the 63-byte limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trackyard.warehouse.naming import MAX_NAME_BYTES, column_name, event_table, fit, snakecase

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "warehouse" / "go_snakecase.json").read_text()
)["vectors"]


@pytest.mark.parametrize(("name", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_go_snakecase_vectors(name: str, expected: str) -> None:
    assert snakecase(name) == expected


@pytest.mark.parametrize(
    ("path", "column"),
    [
        ("context.app.version", "context_app_version"),
        ("context.userAgent", "context_user_agent"),
        ("context.field.nestedA.nestedB", "context_field_nested_a_nested_b"),
        ("address.street", "address_street"),
        ("product_id.sku", "product_id_sku"),
    ],
)
def test_flattened_paths_become_segments_column_names(path: str, column: str) -> None:
    assert column_name(path) == column


@pytest.mark.parametrize(
    ("event", "table"),
    [
        ("Order Completed", "order_completed"),
        ("$pageview", "pageview"),
        ("2FA Enabled", "2fa_enabled"),
        ("users", "_users"),
        ("Tracks", "_tracks"),
        ("discards", "_discards"),
        ("_trackyard_loads", "trackyard_loads"),
        ("•¶§", ""),
    ],
)
def test_event_names_become_tables_that_cannot_clash_with_the_standard_ones(event: str, table: str) -> None:
    assert event_table(event) == table


def test_long_names_are_cut_with_a_hash_so_they_stay_distinct() -> None:
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(fit(a).encode()) == MAX_NAME_BYTES == len(fit(b).encode())
    assert fit(a) != fit(b)
    assert fit("short") == "short"

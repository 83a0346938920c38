"""The source registry's rules, on the SQLite backend: allowed names, removal, ids never reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.storage.source_names import InvalidSourceName
from trackyard.storage.sqlite.store import SQLiteStore


def test_add_checks_the_name(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path), writer=False)
    try:
        with pytest.raises(InvalidSourceName, match="letters, digits"):
            store.add_source("we b/..")
        assert store.sources() == []
    finally:
        store.close()


def test_remove_frees_the_name_but_never_the_id(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path), writer=False)
    try:
        first = store.add_source("web")
        removed = store.remove_source("web")
        assert removed == first and store.source_by_name("web") is None
        with pytest.raises(KeyError):
            store.remove_source("web")
        again = store.add_source("web")
        assert again.id > first.id
        store.remove_source("web")
        # Removing the newest source must not hand its id out again either.
        assert store.add_source("app").id > again.id
    finally:
        store.close()


def test_remove_works_on_a_store_made_before_removals_existed(tmp_path: Path) -> None:
    store = SQLiteStore(Settings(data_dir=tmp_path), writer=False)
    source = store.add_source("web")
    store._conn.execute("DROP TABLE removed_sources")
    store.close()
    store = SQLiteStore(Settings(data_dir=tmp_path), writer=False)
    try:
        assert store.remove_source("web").id == source.id
        assert store.add_source("app").id == source.id + 1
    finally:
        store.close()

"""``/metrics`` of a real server shows ``trackyard store status``'s figures: after events, and
after ``trackyard store prune`` dropped some."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import cli, start_server
from tests.http.test_metrics import gauges_reader, scrape_until, value
from tests.retention.conftest import DAY_MS, write
from trackyard.config import Settings
from trackyard.storage.factory import open_backends


def test_retention_figures_are_scraped_after_events_and_after_a_prune(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, durability="process", dedup_memory_keys=4096)
    backends = open_backends(settings, writer=True)
    try:
        write(backends, 3_000, received_ms=int(time.time() * 1000) - 40 * DAY_MS)
    finally:
        backends.close()
    # --role ingest: the profiles consumer is enabled but runs nowhere, so it reads nothing
    # and holds back what a 30-day retention would drop.
    env = {"TRACKYARD_RETENTION": "30d", "TRACKYARD_WAREHOUSE": "off"}
    server = start_server(data_dir, "--role", "ingest", env=env)
    try:
        cli("store", "prune", "--data-dir", str(data_dir), "--older-than", "30d")  # compacts, drops nothing
        with gauges_reader(data_dir, env):  # what reads the store gauges beside an ingest node
            _check(server.url, data_dir)
    finally:
        server.stop()


def _check(url: str, data_dir: Path) -> None:
    """The figures before a prune that drops nothing, and after one that drops."""
    before = scrape_until(url, lambda s: value(s, "trackyard_store_events") == 3_000)
    assert value(before, "trackyard_store_events") == 3_000
    assert value(before, "trackyard_store_oldest_event_age_seconds") > 39 * 86_400
    assert value(before, "trackyard_store_disk_bytes", part="log") > 0
    # Every part, even those of no bytes (the dedup keys of 40 days ago have expired).
    for part in ("dedup", "rejects", "profiles", "warehouse"):
        assert ("trackyard_store_disk_bytes", (("part", part),)) in before
    assert value(before, "trackyard_retention_held_back", consumer="profiles") == 1

    cli("store", "prune", "--data-dir", str(data_dir), "--older-than", "30d", "--ignore-consumers")
    kept_now = ("trackyard_store_events", ())
    after = scrape_until(url, lambda s: kept_now in s and s[kept_now] < 3_000)
    kept = value(after, "trackyard_store_events")
    assert kept < 3_000
    assert value(after, "trackyard_store_disk_bytes", part="log") < value(
        before, "trackyard_store_disk_bytes", part="log"
    )
    # What is left is not due (hot rows are never dropped): nothing holds retention back.
    assert value(after, "trackyard_retention_held_back", consumer="profiles") == 0
    assert ("trackyard_retention_held_back", (("consumer", "profiles"),)) in after

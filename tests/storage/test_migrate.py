"""``trackyard migrate``: the SQLite store copied into a real PostgreSQL database, resumably."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from click.testing import CliRunner

from tests.consumers.conftest import append
from tests.consumers.test_supervisor import _identifies
from tests.pg_databases import fresh_database
from tests.storage.nats_servers import nats_servers
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.profiles.consumer import catch_up
from trackyard.profiles.settings import ProfileSettings
from trackyard.storage.base import EventRecord
from trackyard.storage.destinations import Destination
from trackyard.storage.factory import Backends, open_backends, open_destinations


def _migrate(data_dir: Path, dsn: str, *more: str) -> str:
    result = CliRunner().invoke(main, ["migrate", "--data-dir", str(data_dir), "--to-state", dsn, *more])
    assert result.exit_code == 0, result.output
    return result.stdout


def _events(backends: Backends) -> list[tuple[int, int, str, bytes]]:
    return [tuple(e) for e in backends.log.read_events(limit=100_000)]  # type: ignore[misc]


def _assert_resumes(sqlite: Backends, target: Backends, data: Path, dsn: str, *more: str) -> None:
    """A run after everything was copied copies nothing; one after more events, just those."""
    assert "0 events" in _migrate(data, dsn, *more)
    append(sqlite, _identifies(1200, 300))  # the old server kept accepting
    assert "300 events" in _migrate(data, dsn, *more)
    assert _events(target) == _events(sqlite) and target.log.head_seq() == 1500


def _small_store(data: Path, write_key: str | None = None) -> Path:
    """A SQLite store with source ``web`` and 10 events."""
    sqlite = open_backends(Settings(data_dir=data), writer=True)
    sqlite.sources.add_source("web", write_key=write_key)
    append(sqlite, _identifies(0, 10))
    sqlite.close()
    return data


def _normalised(snapshot: dict[str, list[object]]) -> dict[str, list[tuple[object, ...]]]:
    """SQLite keeps booleans as 0/1: compare as ints."""
    return {
        t: [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows]  # type: ignore[attr-defined]
        for t, rows in snapshot.items()
    }


def test_migrate_copies_everything_and_a_second_run_copies_only_what_is_new(
    pg_dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    sqlite = open_backends(Settings(data_dir=data), writer=True)
    web = sqlite.sources.add_source("web", write_key="k-web", secret="s3cret", rate_limit=5.0)
    sqlite.sources.add_source("app")
    append(sqlite, _identifies(0, 1200))
    catch_up(sqlite.log, sqlite.profiles(), ProfileSettings())
    sqlite.cursors().commit("warehouse", 700)
    registry = open_destinations(sqlite.settings)
    registry.add(Destination(name="hook", kind="webhook", url="https://example.com/in", secret="sig"))
    registry.close()

    out = _migrate(data, pg_dsn)
    assert "copied 2 sources, 1 destinations, 1200 events, the profiles and 1 cursors" in out
    pg = open_backends(Settings(data_dir=tmp_path / "node", state_url=pg_dsn), writer=True)
    try:
        assert pg.sources.sources() == sqlite.sources.sources()
        assert pg.sources.source_by_name("web") == web  # the secret's hash and the limit too
        assert _events(pg) == _events(sqlite)
        assert _normalised(pg.profiles().snapshot()) == _normalised(sqlite.profiles().snapshot())
        assert pg.profiles().progress().cursor == 1200
        assert pg.cursors().get("warehouse") == 700
        assert open_destinations(pg.settings).get("hook").secret == "sig"
        # An event sent before the move and retried after it is still a duplicate.
        retry = EventRecord(1, "m7", "identify", int(time.time() * 1000), b'{"messageId":"m7"}')
        result = asyncio.run(pg.log.append([retry], []))
        assert (result.stored, result.duplicates) == (0, 1)

        again = _migrate(data, pg_dsn)
        assert (
            "copied 0 sources, 0 destinations, 0 events, no (already there) profiles and 0 cursors" in again
        )
        _assert_resumes(sqlite, pg, data, pg_dsn)
    finally:
        pg.close()
        sqlite.close()


def test_migrate_refuses_a_target_that_holds_other_events_or_sources(pg_dsn: str, tmp_path: Path) -> None:
    data = _small_store(tmp_path / "data", write_key="k1")
    pg = open_backends(Settings(data_dir=tmp_path / "node", state_url=pg_dsn), writer=True)
    pg.sources.add_source("web", write_key="other")
    pg.close()
    runner = CliRunner()
    refused = runner.invoke(main, ["migrate", "--data-dir", str(data), "--to-state", pg_dsn])
    assert refused.exit_code == 1 and "already has a different source named 'web'" in refused.output
    missing = runner.invoke(main, ["migrate", "--data-dir", str(tmp_path / "none"), "--to-state", pg_dsn])
    assert missing.exit_code == 1 and "no trackyard store in" in missing.output


def test_migrate_to_jetstream_keeps_every_seq_and_resumes(pg_dsn: str, tmp_path: Path) -> None:
    """The log into a real JetStream stream (the state into PostgreSQL): each event at its
    own seq, so the cursors stay valid; the dedup keys along; a second run copies nothing."""
    data = tmp_path / "data"
    sqlite = open_backends(Settings(data_dir=data), writer=True)
    sqlite.sources.add_source("web")
    append(sqlite, _identifies(0, 1200))
    catch_up(sqlite.log, sqlite.profiles(), ProfileSettings())
    sqlite.cursors().commit("warehouse", 700)
    with nats_servers(tmp_path / "nats") as nats:
        out = _migrate(data, pg_dsn, "--to-log", nats.url)
        assert "copied 1 sources, 0 destinations, 1200 events, the profiles and 1 cursors" in out
        settings = Settings(data_dir=tmp_path / "node", state_url=pg_dsn, log_url=nats.url)
        cluster = open_backends(settings, writer=True)
        try:
            assert _events(cluster) == _events(sqlite)
            assert cluster.profiles().progress().cursor == 1200
            assert cluster.cursors().get("warehouse") == 700
            retry = EventRecord(1, "m7", "identify", int(time.time() * 1000), b'{"messageId":"m7"}')
            result = asyncio.run(cluster.log.append([retry], []))
            assert (result.stored, result.duplicates) == (0, 1)

            _assert_resumes(sqlite, cluster, data, pg_dsn, "--to-log", nats.url)
        finally:
            cluster.close()
            sqlite.close()


def test_migrate_refuses_a_stream_that_holds_other_events(pg_dsn: str, tmp_path: Path) -> None:
    data = _small_store(tmp_path / "data")
    with nats_servers(tmp_path / "nats") as nats, fresh_database() as elsewhere:
        other = open_backends(
            Settings(data_dir=tmp_path / "other", state_url=elsewhere, log_url=nats.url), writer=True
        )
        try:
            other.sources.add_source("web")
            append(other, _identifies(100, 3))  # three events from elsewhere, seqs 1 to 3
        finally:
            other.close()
        refused = CliRunner().invoke(
            main, ["migrate", "--data-dir", str(data), "--to-state", pg_dsn, "--to-log", nats.url]
        )
    assert refused.exit_code == 1, refused.output
    assert "the target's log holds other events (its event 3 is not this store's)" in refused.output

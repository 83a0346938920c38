"""``trackyard warehouse``, ``sql`` and ``export`` as a user runs them, on a real server's log."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import duckdb
import msgspec
import pytest
from click.testing import CliRunner

from tests.conftest import Server, cli
from tests.warehouse.conftest import dump
from trackyard.cli import main
from trackyard.warehouse import WarehouseSink


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def status(data_dir: Path, *extra: str) -> dict[str, object]:
    out = cli("warehouse", "status", "--data-dir", str(data_dir), "--json", *extra)
    body: dict[str, object] = msgspec.json.decode(out)
    return body


def test_sync_then_status_in_the_default_duckdb_file(event_server: Server) -> None:
    d = str(event_server.data_dir)
    before = status(event_server.data_dir)
    assert before["lag"] == before["head"] == event_server.stored  # type: ignore[attr-defined]
    code, out, err = run("warehouse", "sync", "--data-dir", d)
    assert code == 0
    assert f"loaded {event_server.stored} events" in out  # type: ignore[attr-defined]
    assert "loading" in err  # the progress bar
    assert (event_server.data_dir / "warehouse.duckdb").exists()
    after = status(event_server.data_dir)
    assert after["lag"] == 0 and after["position"] == event_server.stored  # type: ignore[attr-defined]
    tables = after["tables"]
    assert isinstance(tables, dict)
    assert tables["tracks"] == 10 and tables["users"] == 2 and tables["accounts"] == 1
    assert after["discards"] == tables["discards"] and tables["discards"] > 0
    assert after["last_error"] is None
    # A second sync has nothing to do.
    assert "loaded 0 events" in cli("warehouse", "sync", "--data-dir", d)
    text = cli("warehouse", "status", "--data-dir", d)
    assert "lag 0" in text and "order_completed" in text

    rows = [
        msgspec.json.decode(line)
        for line in cli(
            "sql", "SELECT id, plan FROM users ORDER BY id", "--data-dir", d, "--json"
        ).splitlines()
    ]
    assert rows == [{"id": "u1", "plan": "team"}, {"id": "u2", "plan": None}]
    table = cli("sql", "SELECT event, count(*) AS n FROM tracks GROUP BY 1 ORDER BY 1", "--data-dir", d)
    assert "order_completed" in table and "n" in table
    got = list(
        csv.reader(io.StringIO(cli("sql", "SELECT id, received_at FROM pages", "--data-dir", d, "--csv")))
    )
    assert got[0] == ["id", "received_at"] and got[1][0] == "s-page-1" and got[1][1].endswith("Z")

    listed = [
        msgspec.json.decode(line)
        for line in cli("warehouse", "discards", "--data-dir", d, "--json").splitlines()
    ]
    assert {
        "row_id": "s-track-2",
        "table_name": "order_completed",
        "column_name": "coupon",
        "column_value": "SPRING",
        "reason": "text value in a boolean column",
    } in [{k: v for k, v in r.items() if k != "received_at"} for r in listed]


def test_rebuild_gives_the_same_tables(event_server: Server, tmp_path: Path) -> None:
    url = f"duckdb://{tmp_path / 'w.duckdb'}"
    d = str(event_server.data_dir)
    cli("warehouse", "sync", "--data-dir", d, "--warehouse", url, "--batch-size", "3")
    sink = WarehouseSink.open(url, event_server.data_dir)
    first = dump(sink.backend)
    sink.close()
    code, out, err = run("warehouse", "rebuild", "--data-dir", d, "--warehouse", url)
    assert code == 0 and "rebuilding" in err and f"position {event_server.stored}" in out  # type: ignore[attr-defined]
    sink = WarehouseSink.open(url, event_server.data_dir)
    assert dump(sink.backend) == first
    sink.close()


def test_postgresql_by_environment_variable(event_server: Server, pg_dsn: str) -> None:
    d = str(event_server.data_dir)
    env = {"TRACKYARD_WAREHOUSE": pg_dsn}
    code, out, _ = run("warehouse", "sync", "--data-dir", d, env=env)
    assert code == 0, out
    code, out, _ = run("warehouse", "status", "--data-dir", d, "--json", env=env)
    body = msgspec.json.decode(out)
    assert body["warehouse"] == "postgresql" and body["lag"] == 0
    code, out, _ = run("sql", "SELECT count(*) AS n FROM tracks", "--data-dir", d, "--json", env=env)
    assert msgspec.json.decode(out) == {"n": 10}


def test_export_the_log_as_parquet_and_jsonl(event_server: Server, tmp_path: Path) -> None:
    d = str(event_server.data_dir)
    code, out, err = run("export", "--format", "parquet", "--out", str(tmp_path / "p"), "--data-dir", d)
    assert code == 0 and "exporting" in err
    parquet = tmp_path / "p" / "events.parquet"
    rows = (
        duckdb.connect()
        .execute(f"SELECT type, message_id, source_id, body FROM '{parquet}' ORDER BY seq")
        .fetchall()
    )
    assert len(rows) == event_server.stored  # type: ignore[attr-defined]
    assert rows[0][:3] == ("identify", "s-identify-1", 1)
    assert msgspec.json.decode(rows[0][3])["traits"]["email"] == "ann@example.com"

    cli("export", "--format", "jsonl", "--out", str(tmp_path / "j"), "--type", "group", "--data-dir", d)
    lines = (tmp_path / "j" / "events.jsonl").read_text().splitlines()
    assert [msgspec.json.decode(line)["messageId"] for line in lines] == ["s-group-1", "s-group-2"]
    assert lines == [msgspec.json.encode(e).decode() for e in event_server.events(type="group")]

    code, out, _ = run(
        "export",
        "--format",
        "jsonl",
        "--out",
        str(tmp_path / "f"),
        "--since",
        "2999-01-01T00:00:00Z",
        "--data-dir",
        d,
    )
    assert code == 0 and "wrote 0 rows" in out


def test_export_a_warehouse_table(event_server: Server, tmp_path: Path) -> None:
    url = f"duckdb://{tmp_path / 'w.duckdb'}"
    d = str(event_server.data_dir)
    cli("warehouse", "sync", "--data-dir", d, "--warehouse", url)
    out = cli(
        "export",
        "--format",
        "parquet",
        "--table",
        "users",
        "--out",
        str(tmp_path / "t"),
        "--data-dir",
        d,
        "--warehouse",
        url,
    )
    assert "wrote 2 rows" in out
    rows = (
        duckdb.connect()
        .execute(f"SELECT id, email FROM '{tmp_path / 't' / 'users.parquet'}' ORDER BY id")
        .fetchall()
    )
    assert rows == [("u1", "ann@example.com"), ("u2", "bo@example.com")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["warehouse", "status", "--warehouse", "mysql://x"], "unsupported warehouse URL"),
        (["sql", "SELEC nonsense"], "syntax error"),
        (["sql", "SELECT 1", "--json", "--csv"], "exclude each other"),
        (["export", "--format", "parquet", "--out", "x", "--since", "yesterday"], "not an ISO-8601 time"),
        (["export", "--format", "parquet", "--out", "x", "--table", "nope"], "no table 'nope'"),
    ],
)
def test_bad_input_gets_a_clear_error(
    event_server: Server, tmp_path: Path, args: list[str], message: str
) -> None:
    url = f"duckdb://{tmp_path / 'w.duckdb'}"
    extra = [] if "--warehouse" in args else ["--warehouse", url]
    code, out, err = run(*args, "--data-dir", str(event_server.data_dir), *extra)
    assert code != 0
    assert message in out + err


def test_a_missing_store_is_explained(tmp_path: Path) -> None:
    code, out, err = run("warehouse", "sync", "--data-dir", str(tmp_path / "none"))
    assert code != 0 and "No trackyard store" in out + err


def test_sql_waits_for_the_file_and_says_what_to_do_when_it_stays_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trackyard.warehouse import _duckdb

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    # Another process holds the file for writing, as a loader would, and does not let go.
    hold = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
    pipe = subprocess.PIPE
    holder = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdin=pipe, stdout=pipe, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setattr(_duckdb, "READ_WAIT", 0.3)
        code, out, err = run("sql", "SELECT 1", "--data-dir", str(tmp_path))
        assert code == 1
        assert "stayed in use by another process" in err and "try again, or stop that process" in err
        assert "Traceback" not in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once it lets go, the same command reads.
    code, out, _ = run("sql", "SELECT 1 AS one", "--json", "--data-dir", str(tmp_path))
    assert code == 0 and msgspec.json.decode(out) == {"one": 1}

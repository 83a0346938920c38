"""The command line: what a newcomer runs, and that its docs say what it does."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner
from scripts.cli_docs import render

from tests.conftest import Server, cli
from trackyard.cli import main
from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import open_backends
from trackyard.storage.secrets import verify_secret

REPO = Path(__file__).resolve().parent.parent


def test_docs_cli_md_is_generated_from_the_current_help() -> None:
    assert (REPO / "docs" / "cli.md").read_text() == render(), "docs/cli.md is stale: run `make docs`"


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the top group imports its commands on first use
        command = group.get_command(ctx, name)
        assert command is not None, f"{path} {name}"
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "command"), _commands(main, "trackyard"), ids=lambda v: str(v))
def test_every_command_and_option_is_explained(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path} {param.opts[0]} has no help text"


def test_first_serve_creates_a_source_and_its_curl_example_works(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "trackyard", "serve", "--port", "0", "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "listening on" in line:
            break
    try:
        output = "".join(lines)
        key = re.search(r"Its write key:\s+(\S+)", output)
        assert key, output
        example = output[output.index("curl ") : output.index("\n\ntrackyard")].replace("\\\n", " ")
        result = subprocess.run(shlex.split(example), capture_output=True, text=True, timeout=30)
        assert result.stdout == '{"success": true}'
        (event,) = [
            msgspec.json.decode(line)
            for line in cli("events", "--data-dir", str(tmp_path / "d"), "--json").splitlines()
        ]
        assert event["event"] == "Signed Up" and event["source"]["name"] == "default"
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


def test_sources_lifecycle(tmp_path: Path) -> None:
    data = str(tmp_path)
    key = cli("sources", "add", "web", "--write-key", "k" * 32, "--data-dir", data).strip()
    assert key == "k" * 32
    generated = cli("sources", "add", "app", "--rate-limit", "50", "--data-dir", data).strip()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", generated)
    rotated = cli("sources", "rotate", "web", "--data-dir", data).strip()
    assert rotated != key
    cli("sources", "disable", "app", "--data-dir", data)
    listed = [
        msgspec.json.decode(line)
        for line in cli("sources", "list", "--json", "--data-dir", data).splitlines()
    ]
    assert [(s["name"], s["write_key"], s["enabled"], s["rate_limit"]) for s in listed] == [
        ("web", rotated, True, None),
        ("app", generated, False, 50.0),
    ]
    assert "web" in cli("sources", "list", "--data-dir", data)


def test_sources_errors_say_what_to_do(tmp_path: Path) -> None:
    runner = CliRunner()
    cli("sources", "add", "web", "--data-dir", str(tmp_path))
    again = runner.invoke(main, ["sources", "add", "web", "--data-dir", str(tmp_path)])
    assert again.exit_code == 1 and "exists already" in again.output
    missing = runner.invoke(main, ["sources", "disable", "nope", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "trackyard sources list" in missing.output
    no_store = runner.invoke(main, ["events", "--data-dir", str(tmp_path / "empty")])
    assert no_store.exit_code == 1 and "trackyard serve --data-dir" in no_store.output


def test_events_filters_and_cursor(tmp_path: Path) -> None:
    backends = open_backends(Settings(data_dir=tmp_path), writer=True)
    web = backends.sources.add_source("web")
    app = backends.sources.add_source("app")
    records = [
        EventRecord(src.id, f"m{i}", kind, 0, msgspec.json.encode({"type": kind, "messageId": f"m{i}"}))
        for i, (src, kind) in enumerate(
            [(web, "track"), (app, "identify"), (web, "identify"), (web, "track")]
        )
    ]
    asyncio.run(backends.log.append(records, []))
    backends.close()

    def ids(*args: str) -> list[str]:
        out = cli("events", "--data-dir", str(tmp_path), "--json", *args)
        return [msgspec.json.decode(line)["messageId"] for line in out.splitlines()]

    assert ids() == ["m0", "m1", "m2", "m3"]
    assert ids("--source", "web") == ["m0", "m2", "m3"]
    assert ids("--type", "identify") == ["m1", "m2"]
    assert ids("--source", "web", "--type", "track", "--limit", "1") == ["m0"]
    assert ids("--after", "2") == ["m2", "m3"]
    assert "m3" in cli("events", "--data-dir", str(tmp_path))


def test_data_dir_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sources", "add", "env"], env={"TRACKYARD_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0
    assert (tmp_path / "trackyard.db").exists()


def test_the_store_url_from_the_environment(tmp_path: Path) -> None:
    elsewhere = tmp_path / "store"
    env = {"TRACKYARD_STORE": f"sqlite://{elsewhere}"}
    added = CliRunner().invoke(main, ["sources", "add", "web", "--data-dir", str(tmp_path / "d")], env=env)
    assert added.exit_code == 0, added.output
    assert (elsewhere / "trackyard.db").exists() and not (tmp_path / "d" / "trackyard.db").exists()
    listed = CliRunner().invoke(
        main, ["sources", "list", "--json", "--data-dir", str(tmp_path / "d")], env=env
    )
    assert msgspec.json.decode(listed.stdout)["name"] == "web"


@pytest.mark.parametrize("args", [["sources", "list"], ["events"], ["rejects"], ["profiles", "status"]])
def test_postgresql_as_the_store_url_points_every_command_to_state(tmp_path: Path, args: list[str]) -> None:
    env = {"TRACKYARD_STORE": "postgresql://user:pw@db.internal/trackyard"}
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 1
    assert "--state postgresql://" in result.output
    assert "pw@" not in result.output


@pytest.mark.parametrize("args", [["sources", "list"], ["events"], ["rejects"], ["profiles", "status"]])
def test_a_bad_log_url_is_refused_by_every_command(tmp_path: Path, args: list[str]) -> None:
    env = {"TRACKYARD_LOG": "nats://user:pw@nats.internal:4222?replicas=nine"}
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 1
    assert "TRACKYARD_LOG: an option's value is not a number" in result.output
    assert "pw@" not in result.output


def test_serve_refuses_a_bad_log_url_before_listening(tmp_path: Path) -> None:
    log = "nats://trackyard:pw@nats.internal:4222?replicas=nine"
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--data-dir", str(tmp_path), "--log", log])
    assert result.exit_code == 1
    assert "an option's value is not a number" in result.output
    assert "pw@" not in result.output
    assert "listening" not in result.output and not (tmp_path / "trackyard.db").exists()


def test_send_each_call(server: Server) -> None:
    base = ["send", "--write-key", server.write_key, "--url", server.url]
    cli(*base, "track", "Signed Up", "--user-id", "u1", "--properties", '{"plan": "pro"}')
    cli(*base, "identify", "--user-id", "u1", "--traits", '{"email": "a@b.c"}')
    cli(*base, "page", "Home", "--anonymous-id", "a1")
    cli(*base, "screen", "Main", "--user-id", "u1")
    cli(*base, "group", "acme", "--user-id", "u1", "--traits", '{"name": "Acme"}')
    cli(*base, "alias", "a1", "--user-id", "u1")
    events = server.events()
    assert [e["type"] for e in events] == ["track", "identify", "page", "screen", "group", "alias"]
    assert events[0]["properties"] == {"plan": "pro"} and events[4]["traits"] == {"name": "Acme"}


def test_send_reports_refusals_and_bad_input(server: Server) -> None:
    runner = CliRunner()
    refused = runner.invoke(
        main, ["send", "--write-key", "wrong", "--url", server.url, "track", "E", "--user-id", "u"]
    )
    assert refused.exit_code == 1 and refused.output.startswith("401 ")
    bad = runner.invoke(main, ["send", "--write-key", "k", "track", "E", "--properties", "[1]"])
    assert bad.exit_code == 2 and "must be a JSON object" in bad.output


def test_sources_add_sets_a_secret_and_prints_a_generated_one_to_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sources", "add", "web", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", key)
    secret = re.search(r"secret: (\S+)", result.stderr)
    assert secret
    backends = open_backends(Settings(data_dir=tmp_path))
    (source,) = backends.sources.sources()
    backends.close()
    assert verify_secret(secret.group(1), source.secret_hash)
    assert secret.group(1) not in (source.secret_hash or "")
    chosen = CliRunner().invoke(
        main, ["sources", "add", "app", "--secret", "s3cret", "--data-dir", str(tmp_path)]
    )
    assert chosen.exit_code == 0 and "secret" not in chosen.stderr

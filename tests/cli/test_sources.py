"""``trackyard sources``: names are checked, keys are never cut short, removal is explicit."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from tests.conftest import cli, start_server
from trackyard.cli import main


def _run(*args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", ["", "we b/..", ".", "-web", "a" * 65, "é", "x;rm"])
def test_add_refuses_names_outside_the_allowed_characters(tmp_path: Path, name: str) -> None:
    code, _, err = _run("sources", "add", "--data-dir", str(tmp_path / "d"), "--", name)
    assert code == 2
    assert "letters, digits, '.', '_' and '-'" in err
    assert not (tmp_path / "d").exists(), "an invalid name must not create a store"


@pytest.mark.parametrize("name", ["web", "ios-app", "backend_2", "a.b", "A" * 64, "0"])
def test_add_takes_allowed_names(tmp_path: Path, name: str) -> None:
    cli("sources", "add", name, "--data-dir", str(tmp_path))
    assert name in cli("sources", "show", name, "--data-dir", str(tmp_path))


def test_list_never_truncates_a_key_or_a_name_on_a_narrow_terminal(tmp_path: Path) -> None:
    data = str(tmp_path)
    key = cli("sources", "add", "web", "--data-dir", data).strip()
    long_name = "a-rather-long-source-name-for-testing"
    other = cli("sources", "add", long_name, "--data-dir", data).strip()
    for columns in ("30", "80"):
        code, out, _ = _run("sources", "list", "--data-dir", data, COLUMNS=columns)
        assert code == 0
        assert key in out and other in out and long_name in out, out
        assert "…" not in out


def test_show_prints_the_whole_key_and_snippets_that_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, source="web")
    try:
        out = cli("sources", "show", "web", "--url", server.url, "--data-dir", str(data))
        assert re.search(rf"^write key: {server.write_key}$", out, re.MULTILINE)
        for sdk in ("segment-analytics-python", "@segment/analytics-node", "@segment/analytics-next"):
            assert sdk in out
        curl = out[out.index("curl ") : out.index("\n\nPython")].replace("\\\n", " ")
        sent = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30, check=True)
        assert sent.stdout == '{"success": true}'
        assert [e["event"] for e in server.events()] == ["Signed Up"]
        shown = msgspec.json.decode(cli("sources", "show", "web", "--json", "--data-dir", str(data)))
        assert shown["write_key"] == server.write_key and "secret_hash" not in shown
    finally:
        server.stop()


def test_show_of_an_unknown_source_says_where_to_look(tmp_path: Path) -> None:
    cli("sources", "add", "web", "--data-dir", str(tmp_path))
    code, _, err = _run("sources", "show", "nope", "--data-dir", str(tmp_path))
    assert code == 1 and "trackyard sources list" in err


def test_remove_asks_and_refuses_without_a_terminal(tmp_path: Path) -> None:
    data = str(tmp_path)
    cli("sources", "add", "web", "--data-dir", data)
    code, _, err = _run("sources", "remove", "web", "--data-dir", data)
    assert code == 1 and "--yes" in err
    assert "web" in cli("sources", "list", "--data-dir", data)


def test_removed_source_keeps_its_events_and_its_id_is_never_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, source="web")
    try:
        old_key = server.write_key
        base = ["send", "--url", server.url, "track", "Before", "--user-id", "u1"]
        cli("send", "--write-key", old_key, *base[1:])
        result = CliRunner().invoke(main, ["sources", "remove", "web", "--yes", "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        assert "stay in the log" in result.stderr
        # The running server stops taking the key at once.
        refused = CliRunner().invoke(main, ["send", "--write-key", old_key, *base[1:]])
        assert refused.exit_code == 1 and refused.output.startswith("401 ")
        # A new source may take the name, with a new id; the old events keep the old one.
        new_key = cli("sources", "add", "web", "--data-dir", str(data)).strip()
        cli("send", "--write-key", new_key, "--url", server.url, "track", "After", "--user-id", "u1")
        events = server.events()
        assert [(e["event"], e["source"]["name"]) for e in events] == [("Before", "web"), ("After", "web")]
        assert events[0]["source"]["id"] != events[1]["source"]["id"]
        assert [e["event"] for e in server.events(source="web")] == ["After"]
    finally:
        server.stop()


def test_second_serve_says_where_to_find_the_key(tmp_path: Path) -> None:
    data = tmp_path / "d"
    cli("sources", "add", "default", "--data-dir", str(data))
    process = subprocess.Popen(
        [sys.executable, "-m", "trackyard", "serve", "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        assert f"trackyard sources show default --data-dir {data}" in "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


def test_remove_on_a_terminal_asks_first(tmp_path: Path) -> None:
    data = str(tmp_path)
    cli("sources", "add", "web", "--data-dir", data)
    cli("sources", "add", "app", "--data-dir", data)

    def remove(name: str, answer: bytes) -> subprocess.CompletedProcess[str]:
        controller, terminal = pty.openpty()
        try:
            os.write(controller, answer)
            return subprocess.run(
                [sys.executable, "-m", "trackyard", "sources", "remove", name, "--data-dir", data],
                stdin=terminal,
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            os.close(controller)
            os.close(terminal)

    kept = remove("web", b"n\n")
    assert kept.returncode == 1 and "Remove it?" in kept.stderr and "stay in the log" in kept.stderr
    assert remove("app", b"y\n").returncode == 0
    names = [
        msgspec.json.decode(line)["name"]
        for line in cli("sources", "list", "--json", "--data-dir", data).split("\n")
        if line
    ]
    assert names == ["web"]

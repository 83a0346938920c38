"""Fixtures: a real trackyard server, as a subprocess, on a free loopback port.

The server is started with ``--port 0``; the kernel picks the port and the server prints
it, so no test ever uses a fixed port. Readiness is the printed line: the socket is
already listening then, so a request made at once waits in the backlog instead of failing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from trackyard.cli import main

_LISTENING = re.compile(r"listening on (http://\S+)")


def require(ok: bool, reason: str) -> None:
    """Skip on a developer machine that lacks a test dependency; under CI it is a failure."""
    if ok:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def cli(*args: str) -> str:
    """Run a ``trackyard`` command in-process and return its standard output."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


class Server:
    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.write_key = ""
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self) -> Server:
        log = self.log.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trackyard",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "warning",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.env,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if match := _LISTENING.search(line):
                self.url = match.group(1)
                return self
        raise RuntimeError(f"the server exited before listening; see {self.log}:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()
        return code

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """The stored events, via ``trackyard events --json`` (what users and acceptance checks run)."""
        args = ["events", "--data-dir", str(self.data_dir), "--json"]
        for name, value in filters.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        # split("\n"), not splitlines(): JSON may hold U+2028 or U+0085 inside a string.
        return [msgspec.json.decode(line) for line in cli(*args).split("\n") if line]

    def rejects(self) -> list[dict[str, Any]]:
        out = cli("rejects", "--data-dir", str(self.data_dir), "--json")
        return [msgspec.json.decode(line) for line in out.split("\n") if line]

    def wait_for_events(self, n: int, timeout: float = 10.0, **filters: Any) -> list[dict[str, Any]]:
        """Poll until at least ``n`` events are stored (SDKs send in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(**filters)
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def start_server(
    data_dir: Path, *extra: str, source: str = "test", env: dict[str, str] | None = None
) -> Server:
    server = Server(data_dir, *extra, env=env)
    server.write_key = cli("sources", "add", source, "--data-dir", str(data_dir)).strip()
    return server.start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server and store for one test, with one enabled source."""
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a whole module, for tests that only look at their own events."""
    srv = start_server(tmp_path_factory.mktemp("shared") / "data")
    yield srv
    srv.stop()

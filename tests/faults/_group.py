"""trackyard processes started as a terminal starts them: in a process group of their own,
so a test can do what Ctrl-C does (signal the whole group) without signalling pytest."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec

from tests.conftest import cli

_READY = re.compile(r"listening on (http://\S+)|consumers running")
_CHILD = "trackyard.consumers._child"
_LOG = ("--log-level", "info")


class Group:
    """``trackyard ARGS...`` as the leader of a new process group (its pid is the group id)."""

    def __init__(self, data_dir: Path, *args: str, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.url = ""
        with log.open("a") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trackyard",
                    *args,
                    "--data-dir",
                    str(data_dir),
                    "--log-level",
                    "info",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if match := _READY.search(line):
                self.url = match.group(1) or ""
                break
        else:
            raise RuntimeError(f"trackyard exited before it was ready:\n{log.read_text()}")
        # Keep reading stdout so the process never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def members(self) -> list[int]:
        """The live processes of the group (zombies excluded)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pid and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    def consumer_pids(self) -> list[int]:
        pids = []
        for pid in self.members():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if _CHILD.encode() in cmdline:
                pids.append(pid)
        return pids

    def wait_for_consumer(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while not (pids := self.consumer_pids()):
            assert time.monotonic() < deadline, f"no consumer process started:\n{self.log.read_text()}"
            time.sleep(0.05)
        return pids[0]

    def wait_for_workers(self, workers: int, timeout: float = 30.0) -> None:
        """Wait until every HTTP worker has started: a Ctrl-C that reaches a worker still
        importing (spawned, before it can install handlers) ends it with a traceback."""
        deadline = time.monotonic() + timeout
        while self.log.read_text().count("Application startup complete.") < workers:
            assert time.monotonic() < deadline, f"{workers} workers did not start:\n{self.log.read_text()}"
            time.sleep(0.05)

    def signal_group(self, sig: int) -> None:
        os.killpg(self.pid, sig)

    def wait_gone(self, timeout: float) -> int:
        """Wait until the leader and every process of its group have exited; the leader's status."""
        deadline = time.monotonic() + timeout
        code = None
        while True:
            if code is None:
                code = self.process.poll()
            if code is not None and not self.members():
                return code
            if time.monotonic() > deadline:
                left = self.members()
                self.kill()
                raise AssertionError(
                    f"still running {timeout:g}s after the stop: {left}\n{self.log.read_text()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def add_source(data_dir: Path) -> str:
    return cli("sources", "add", "test", "--data-dir", str(data_dir)).strip()


class Load:
    """Sends batches of distinct events until stopped; remembers which ones were acknowledged."""

    def __init__(self, url: str, write_key: str, prefix: str = "e", batch: int = 50) -> None:
        self.url, self.write_key, self.prefix, self.batch = url, write_key, prefix, batch
        self.acknowledged: list[str] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        with httpx.Client(auth=(self.write_key, ""), timeout=30) as client:
            while not self.stop.is_set():
                ids = [f"{self.prefix}{n + i}" for i in range(self.batch)]
                n += self.batch
                calls = [{"type": "identify", "userId": "u", "traits": {"n": m}, "messageId": m} for m in ids]
                try:
                    answer = client.post(f"{self.url}/v1/batch", json={"batch": calls})
                except httpx.HTTPError:
                    if self.stop.is_set():
                        return
                    time.sleep(0.05)  # the server is stopping or restarting: try the next batch
                    continue
                if answer.status_code == 200:
                    self.acknowledged += ids

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} events acknowledged"
            time.sleep(0.02)

    def finish(self) -> list[str]:
        self.stop.set()
        self._thread.join(60)
        return list(self.acknowledged)


def stored_message_ids(data_dir: Path) -> set[str]:
    out = cli("events", "--data-dir", str(data_dir), "--json", "--limit", "1000000")
    return {msgspec.json.decode(line)["messageId"] for line in out.split("\n") if line}

"""Real ``nats-server`` processes for tests: one JetStream server, or a three-node cluster
on loopback, each node with its own ports and store directory.

Ports are chosen free by the OS and kept across a node's restart (its routes and the
clients' URL name them). Readiness is polled (``/healthz`` on the monitoring port, and a
JetStream meta leader for a cluster), never slept for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import require

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    """Poll ``check()`` until it is true, or fail saying ``what`` did not happen."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Node:
    name: str
    store_dir: Path
    log: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        answer = httpx.get(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1.0)
        return answer.status_code == 200

    def has_meta_leader(self) -> bool:
        jsz = httpx.get(f"http://127.0.0.1:{self.monitor_port}/jsz", timeout=1.0).json()
        return bool(jsz.get("meta_cluster", {}).get("leader"))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class NatsServers:
    """``size`` JetStream servers (1, or 3 clustered). Use :func:`nats_servers` to get one."""

    def __init__(
        self, base: Path, size: int, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        assert size in (1, 3)
        self.size = size
        self.extra = extra
        #: Environment of the servers beside this process's (the bench's ``GOMAXPROCS``).
        self.env = {**os.environ, **env} if env else None
        self.nodes = [Node(f"n{i + 1}", base / f"n{i + 1}", base / f"n{i + 1}.log") for i in range(size)]

    @property
    def url(self) -> str:
        """The log URL a collector is given: every node's client address."""
        return "nats://" + ",".join(node.client_url for node in self.nodes)

    def _command(self, node: Node) -> list[str]:
        assert NATS_SERVER is not None
        command = [
            NATS_SERVER,
            "-js",
            "-sd", str(node.store_dir),
            "-n", node.name,
            "-a", "127.0.0.1",
            "-p", str(node.port),
            "-m", str(node.monitor_port),
            *self.extra,
        ]  # fmt: skip
        if self.size > 1:
            routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node)
            command += [
                "--cluster_name", "trackyard",
                "--cluster", f"nats://127.0.0.1:{node.cluster_port}",
                "--routes", routes,
            ]  # fmt: skip
        return command

    def start(self, *indices: int) -> None:
        """Start every node (or those given, after :meth:`kill`) and wait until they serve
        JetStream. Several restarted at once wait together: one alone may need the others
        to elect a leader before it is healthy."""
        nodes = self.nodes if not indices else [self.nodes[i] for i in indices]
        for node in nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            with node.log.open("ab") as log:
                node.process = subprocess.Popen(self._command(node), stdout=log, stderr=log, env=self.env)
        for node in nodes:
            wait_until(node.healthy, f"nats-server {node.name} to be healthy (see {node.log})")
        if self.size > 1:
            wait_until(
                lambda: all(n.has_meta_leader() for n in self.nodes if n.running()),
                "the JetStream cluster to elect a meta leader",
            )

    def kill(self, index: int) -> None:
        """SIGKILL one node: no shutdown, no flush, as a crash."""
        node = self.nodes[index]
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()


@contextlib.contextmanager
def nats_servers(base: Path, size: int = 1) -> Iterator[NatsServers]:
    """Started servers, stopped afterwards. Skipped (failed under CI) without ``nats-server``."""
    require(NATS_SERVER is not None, "nats-server is not installed (apt-get install nats-server)")
    servers = NatsServers(base, size)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()

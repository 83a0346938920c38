"""Fixtures for destinations: a real log on SQLite, and a real HTTP receiver on a free port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from trackyard.config import Settings
from trackyard.storage.base import EventRecord
from trackyard.storage.factory import Backends, open_backends


@dataclass(frozen=True)
class Answer:
    """What the receiver answers one request with; ``hang`` seconds of silence first."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class Receiver:
    """A real HTTP server in a thread: answers requests from ``script`` in turn (then 200s)."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    answer = receiver.script.pop(0) if receiver.script else Answer()
                if answer.hang:
                    time.sleep(answer.hang)  # the client's timeout is what ends this request
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic(), answer.status)
                    )
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status <= 299]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.close()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(Settings(data_dir=tmp_path / "data"), writer=True)
    opened.sources.add_source("web", None, None, "s" * 40)
    yield opened
    opened.close()


def append(backends: Backends, events: Sequence[dict[str, Any]], source_id: int = 1) -> None:
    """Append canonical events to the real log, as the collectors do."""
    now = int(time.time() * 1000)
    records = [EventRecord(source_id, e["messageId"], e["type"], now, msgspec.json.encode(e)) for e in events]
    asyncio.run(backends.log.append(records, []))


def tracks(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"type": "track", "messageId": f"m{i}", "userId": f"u{i % 3}", "event": "Signed Up", **extra}
        for i in range(start, start + n)
    ]


def poll(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short backoff and timeouts through the settings, so retries finish in a test's time."""
    monkeypatch.setenv("TRACKYARD_DESTINATION_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("TRACKYARD_DESTINATION_BACKOFF_CAP_SECONDS", "0.05")
    monkeypatch.setenv("TRACKYARD_DESTINATION_TIMEOUT_SECONDS", "0.5")

"""What metrics and the access log cost a request: the ASGI app in-process, A/B, interleaved.

`python -m bench.overhead [--rounds N] [--requests N]` builds the same app several ways
(metrics off; on, counting in memory as one worker does; on, in multiprocess files as
`--workers N` do; the access log on) and sends each the same single-event `/v1/track`
calls, 16 at a time, round after round in turn. It reports the process's CPU time per
request (the SQLite writer thread included; by default durability `process`, without fsync
waits, so the request path's own CPU shows).
CPU time in one process, taken in turns, varies far less than wrk's requests/s on a shared
machine, and the single-event call is where a per-request cost weighs the most. HTTP
parsing (uvicorn) is left out: it is the same in every variant.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import logging.config
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop
from prometheus_client import values
from starlette.types import ASGIApp, Message

from trackyard.config import Settings
from trackyard.http.app import create_app
from trackyard.logs import logging_config
from trackyard.metrics.processes import MULTIPROC_ENV
from trackyard.storage.factory import open_backends

_CONCURRENT = 16


def _app(tmp: Path, name: str, **settings: object) -> tuple[ASGIApp, bytes]:
    data = tmp / name
    configured = Settings(data_dir=data, traffic_summary_seconds=0, **settings)  # type: ignore[arg-type]
    backends = open_backends(configured)
    key = backends.sources.add_source("bench").write_key
    backends.close()
    return create_app(configured), b"Basic " + base64.b64encode(f"{key}:".encode())


async def _drive(app: ASGIApp, auth: bytes, first: int, n: int) -> None:
    async def one(i: int) -> None:
        body = b'{"userId":"u","event":"E","messageId":"m-%d"}' % i
        statuses: list[int] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        headers = [
            (b"content-type", b"application/json"),
            (b"authorization", auth),
            (b"content-length", str(len(body)).encode()),
        ]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/track",
            "raw_path": b"/v1/track",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8088),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        await app(scope, receive, send)
        assert statuses == [200], statuses

    for start in range(first, first + n, _CONCURRENT):
        await asyncio.gather(*(one(i) for i in range(start, start + _CONCURRENT)))


async def _built(tmp: Path, durability: str) -> dict[str, tuple[ASGIApp, bytes]]:
    """The variants, each warmed up (caches, the writer thread, its label children) as it is made.

    prometheus-client picks the value store (memory or files) for a label child when the
    child is made: so the files variant makes all of its own with the variable set.
    """
    variants: dict[str, dict[str, object]] = {
        "metrics off": {"metrics": False},
        "metrics on, 1 worker (in memory)": {"metrics": True},
        "metrics on, --workers N (files)": {"metrics": True},
        "access log on (text), metrics off": {"metrics": False, "access_log": True},
    }
    apps = {}
    for i, (variant, settings) in enumerate(variants.items()):
        in_files = "files" in variant
        if in_files:
            (tmp / "multiprocess").mkdir()
            os.environ[MULTIPROC_ENV] = str(tmp / "multiprocess")
        try:
            app, auth = apps[variant] = _app(tmp, f"v{i}", durability=durability, **settings)
            await _drive(app, auth, 10**9, _CONCURRENT * 10)
        finally:
            if in_files:
                del os.environ[MULTIPROC_ENV]
                values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return apps


async def _measure(tmp: Path, durability: str, rounds: int, n: int) -> dict[str, list[float]]:
    apps = await _built(tmp, durability)
    took: dict[str, list[float]] = {variant: [] for variant in apps}
    for r in range(rounds):
        for variant, (app, auth) in apps.items():
            started = time.process_time()
            await _drive(app, auth, r * n, n)
            took[variant].append((time.process_time() - started) / n * 1e6)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10, help="turns each variant gets (default 10)")
    parser.add_argument(
        "--requests", type=int, default=3200, help="requests a variant and round (default 3200)"
    )
    parser.add_argument(
        "--durability",
        choices=["full", "process"],
        default="process",
        help="process (default): no fsync waits, so the CPU of the request path shows; full: as served",
    )
    args = parser.parse_args()
    # The access log writes where a server's would go, minus the terminal: /dev/null.
    config = logging_config("warning", "text", access_log=True)
    config["handlers"]["stderr"]["stream"] = open(os.devnull, "w")  # noqa: SIM115 (for the run's length)
    logging.config.dictConfig(config)
    with tempfile.TemporaryDirectory(prefix="trackyard-overhead-") as name:
        took = uvloop.run(_measure(Path(name), args.durability, args.rounds, args.requests))
    base = statistics.median(took["metrics off"])
    for variant, times in took.items():
        median = statistics.median(times)
        print(
            f"{variant:36} {median:6.1f} µs CPU/request  (+{median - base:4.1f} µs, {median / base - 1:+.0%})"
        )


if __name__ == "__main__":
    main()

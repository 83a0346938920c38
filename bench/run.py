"""`make bench`: trackyard against this machine's own ceilings, in one run.

Starts trackyard (fresh data dir, default durable mode) and two ceiling apps on the same
HTTP server and worker count (``bench/ceilings.py``), drives each scenario with wrk from
loopback (fresh ids in every request, so dedup never short-cuts), and prints one table:
requests/s, events/s, p50/p99 latency and the ratio to each ceiling; then the CPU time
per event of each stage (ingest, each consumer) beside the ceilings' (``bench/cpu.py``),
the peak RSS of all of trackyard's processes, and the bytes on disk per stored event beside
the canonical JSON's (every file of the store, its write-ahead log included: as written and
once the server's retention consumer has compacted the cold log). The tables are also
written as JSON to ``bench/results/`` with the machine's facts; ``--profile`` adds py-spy
flame graphs (``bench/profile.py``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # run as a script (`python bench/run.py`): bench.* for its helpers
from bench import cpu  # noqa: E402  (needs the path above)
from bench.profile import FirstLoad, py_spy  # noqa: E402

KEY = "benchwritekey0000000000000000000"
SECRET = "bench-secret"
console = Console(stderr=True)
out_console = Console(width=150)


@dataclass
class Scenario:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: str  # a template with {{ID}} slots, or "BODIES <file>"
    events: int  # events per request
    connections: int = 32
    #: For a "BODIES" scenario of gzip bodies: the template they were made from, to make
    #: fresh ones (write_gzip_bodies) where the same ids must not be sent twice.
    gzip_template: str | None = None


@dataclass
class Result:
    scenario: str
    target: str
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    extra: dict[str, Any] = field(default_factory=dict)


def _track(slot: str = "{{ID}}") -> dict[str, Any]:
    return {
        "userId": "user-" + slot,
        "event": "Product Viewed",
        "messageId": slot,
        "properties": {"product_id": "sku-1042", "price": 129.5, "currency": "EUR", "path": "/products/1042"},
        "context": {
            "library": {"name": "bench", "version": "1.0"},
            "page": {"url": "https://shop.example/p/1042"},
        },
        "timestamp": "2026-01-01T12:00:00.000Z",
    }


def write_gzip_bodies(path: Path, template: str, tag: str, count: int = 6000) -> Path:
    """``count`` gzip bodies of ``template``, each ``{{ID}}`` stamped with an id that has
    ``tag`` in it (gzip bodies cannot be stamped per request: enough distinct ones for a
    run are built beforehand and replayed in order)."""
    parts = template.split("{{ID}}")
    with path.open("wb") as out:
        for n in range(count):
            stamped = "".join(f"{part}{tag}-{n}-{i}" for i, part in enumerate(parts[:-1])) + parts[-1]
            body = gzip.compress(stamped.encode(), compresslevel=6)
            out.write(f"{len(body)}\n".encode() + body)
    return path


def scenarios(tmp: Path) -> list[Scenario]:
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    js = {"Content-Type": "application/json", "Authorization": basic}
    batch = {
        "batch": [{**_track(), "type": "track"} for _ in range(100)],
        "sentAt": "2026-01-01T12:00:01.000Z",
    }
    gz_template = json.dumps(batch)
    gz_file = write_gzip_bodies(tmp / "batch.gz.bodies", gz_template, "gz")
    commands = [
        {
            "name": "customers/events",
            "command_id": "{{ID}}",
            "data": {
                "customer_ids": {"registered": "user-{{ID}}"},
                "event_type": "purchase",
                "timestamp": 1767268800.5,
                "properties": {"total": 42.5, "currency": "EUR", "order": "{{ID}}"},
            },
        }
        for _ in range(50)
    ]
    vitally = [
        {
            "type": "track",
            "userId": "user-{{ID}}",
            "event": "Opened App",
            "messageId": "{{ID}}",
            "timestamp": "2026-01-01T12:00:00.000Z",
            "properties": {"screen": "home", "build": 812},
        }
        for _ in range(100)
    ]
    koala = {
        "profile_id": "5b0a3c1e-{{ID}}",
        "email": "ann@example.com",
        "events": [
            {
                "type": "track",
                "event": "Viewed Pricing",
                "message_id": "{{ID}}",
                "sent_at": "2026-01-01T12:00:00Z",
                "properties": {"plan": "pro"},
            }
            for _ in range(30)
        ],
    }
    return [
        Scenario("segment track", "POST", "/v1/track", js, json.dumps(_track()), 1, connections=32),
        Scenario("segment batch 100", "POST", "/v1/batch", js, json.dumps(batch), 100, connections=16),
        Scenario(
            "segment batch 100 gzip",
            "POST",
            "/v1/batch",
            {**js, "Content-Encoding": "gzip"},
            f"BODIES {gz_file}",
            100,
            connections=16,
            gzip_template=gz_template,
        ),
        Scenario(
            "bloomreach batch 50",
            "POST",
            f"/track/v2/projects/{KEY}/batch",
            {"Content-Type": "application/json", "Authorization": f"Token {KEY}"},
            json.dumps({"commands": commands}),
            50,
            connections=16,
        ),
        Scenario(
            "vitally batch 100",
            "POST",
            "/analytics/v1/batch",
            {"Content-Type": "application/json", "Authorization": f"Basic {KEY}"},
            json.dumps(vitally),
            100,
            connections=16,
        ),
        Scenario(
            "koala batch 30",
            "POST",
            f"/web/projects/{KEY}/batch",
            {"Content-Type": "application/json"},
            json.dumps(koala),
            30,
            connections=16,
        ),
    ]


class Process:
    """A server subprocess that prints its URL once it listens; its RSS is sampled while it runs."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        self.url = ""
        for line in self.proc.stdout:
            if match := re.search(r"(http://127\.0\.0\.1:\d+)", line):
                self.url = match.group(1)
                break
        if not self.url:
            raise RuntimeError(f"{args} did not start")
        self.rss = cpu.PeakRss(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by the server and every process below it."""
        return sum(cpu.sample(self.proc.pid).cpu_s.values())

    @property
    def peak_rss_kb(self) -> int:
        """The peak of the RSS of the server and every process below it, consumers included."""
        return self.rss.total_kb

    def stop(self) -> None:
        self.rss.stop()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Beside:
    """A thread that runs beside the scenarios until :meth:`stop`, which returns its figures."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _figures(self) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return self._figures()


class MetricsScraper(_Beside):
    """`--scrape-metrics`: GET /metrics every second, as Prometheus would, timing each scrape."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self._url = f"{url}/metrics"
        self._interval = interval
        self._seconds: list[float] = []
        self._failures = 0
        super().__init__("metrics-scraper")

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.wait(self._interval):
                started = time.perf_counter()
                try:
                    ok = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self._seconds.append(time.perf_counter() - started)
                else:
                    self._failures += 1

    def _figures(self) -> dict[str, Any]:
        took = sorted(self._seconds)
        return {
            "scrapes": len(took),
            "failures": self._failures,
            "median_ms": round(took[len(took) // 2] * 1000, 1) if took else None,
            "max_ms": round(took[-1] * 1000, 1) if took else None,
        }


class ConsoleWatcher(_Beside):
    """`--watch-console`: a browser on the live debugger. Signs in with the admin token and
    keeps one debugger stream open, as the page's EventSource does: the server ends each
    stream after a few seconds and it reconnects at once with ``Last-Event-ID``. What comes
    is read and discarded; only counted."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token
        self.figures: dict[str, Any] = {"streams": 0, "batches": 0, "events_shown": 0, "sampled": False}
        self._failures: list[str] = []
        super().__init__("console-watcher")

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            signed_in = client.post("/console/sign-in", data={"token": self._token, "next": "/console/live"})
            if signed_in.status_code != 303:
                self._failures.append(f"sign-in answered {signed_in.status_code}")
                return
            resume: str | None = None
            while not self._stop.is_set():
                try:
                    resume = self._follow(client, resume)
                except httpx.HTTPError as error:
                    self._failures.append(f"{type(error).__name__}: {error}")
                    self._stop.wait(0.25)

    def _follow(self, client: httpx.Client, resume: str | None) -> str | None:
        """One stream, to its end; where the next one resumes."""
        headers = {"Last-Event-ID": resume} if resume else {}
        with client.stream("GET", "/console/live/stream", headers=headers) as stream:
            if stream.status_code != 200:
                self._failures.append(f"stream answered {stream.status_code}")
                self._stop.wait(0.25)
                return resume
            self.figures["streams"] += 1
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    resume = line[4:]
                elif line.startswith("data: "):
                    batch = json.loads(line[6:])
                    self.figures["batches"] += 1
                    self.figures["events_shown"] += len(batch.get("events", ()))
                    self.figures["sampled"] |= bool(batch.get("status", {}).get("sampling"))
                if self._stop.is_set():
                    break
        return resume

    def _figures(self) -> dict[str, Any]:
        return {
            **self.figures,
            "failures": len(self._failures),
            "first_failure": next(iter(self._failures), None),
        }


def wrk(
    url: str, scenario: Scenario, tmp: Path, seconds: int, run_id: str, delay_ms: float = 0
) -> dict[str, Any]:
    slug = re.sub(r"\W+", "-", scenario.name)
    spec = tmp / f"{slug}.spec"
    head = "\n".join([scenario.method, scenario.path, *[f"{k}: {v}" for k, v in scenario.headers.items()]])
    spec.write_text(f"{head}\n\n{scenario.body}")
    env = {**os.environ, "BENCH_DELAY_MS": str(delay_ms)}
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{scenario.connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(BENCH / "load.lua"),
            url,
            "--",
            str(spec),
            run_id,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "requests": int(total.group(1)) if total else 0,
    }


def measured(
    server: Process,
    scenario: Scenario,
    load: Callable[[], dict[str, Any]],
    data: Path | None,
    catch_up_s: float,
) -> tuple[dict[str, Any], dict[str, Any], tuple[float, int]]:
    """wrk's figures, the CPU by stage (``bench/cpu.py``) as a row's extra fields, and the
    seconds the consumers of ``data`` were waited for after the load, with what profiles
    applied in them."""
    m, cost = cpu.measure(server.proc.pid, load, data, catch_up_s)
    events = (m["requests"] - m["non_2xx"]) * scenario.events
    extra = {"requests": m["requests"], **cost.fields(m["requests"], events)}
    return m, extra, (cost.waited_s, cost.applied_after_load.get("profiles") or 0)


def _json_from(*module_args: str) -> dict[str, Any]:
    """The JSON object that ``python -m MODULE ARGS...`` prints (run from the repository)."""
    out = subprocess.run(
        [sys.executable, "-m", *module_args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    body: dict[str, Any] = json.loads(out)
    return body


def profile_status(data: Path) -> dict[str, Any]:
    return _json_from("trackyard", "profiles", "status", "--json", "--data-dir", str(data))


def warehouse_lag(data: Path) -> int | None:
    """The warehouse loader's lag (``trackyard warehouse status``, read beside the running loader)."""
    try:
        lag: int = _json_from("trackyard", "warehouse", "status", "--json", "--data-dir", str(data))["lag"]
    except subprocess.CalledProcessError as error:
        console.print(f"[yellow]warehouse status failed: {error.stderr.strip()}[/yellow]")
        return None
    return lag


WAREHOUSE = "warehouse load"


def warehouse_scenario(events: int) -> dict[str, Any]:
    """The loader alone over a prepared log, into DuckDB and (a scratch database) PostgreSQL,
    in a process of its own (``bench/warehouse.py``)."""
    console.print(f"[dim]{WAREHOUSE}: {events:,} events into each warehouse[/dim]")
    return _json_from("bench.warehouse", "--events", str(events), "--json")


def drain_backlog(data: Path, limit_s: float = 60) -> tuple[float, int]:
    """Wait until the profile consumer has caught up: the seconds waited, the events it applied."""
    t0, before = time.monotonic(), profile_status(data)
    status = before
    while status["lag"] > 0 and time.monotonic() - t0 < limit_s:
        time.sleep(0.2)
        status = profile_status(data)
    return time.monotonic() - t0, status["processed"] - before["processed"]


def consumer_catch_up(
    data: Path, started: float, limit_s: float, paused: tuple[float, int] = (0.0, 0)
) -> dict[str, Any]:
    """The profile consumer's lag when the load stops, and how fast it drains it afterwards.

    ``paused``: seconds without load and the events applied in them, left out of the rate.
    """
    at_end = profile_status(data)
    load_s = time.monotonic() - started - paused[0]
    applied_during_load = at_end["processed"] - paused[1]
    t0, cursor0 = time.monotonic(), at_end["cursor"]
    status = at_end
    while status["lag"] > 0 and time.monotonic() - t0 < limit_s:
        time.sleep(1)
        status = profile_status(data)
    drain_s = time.monotonic() - t0
    return {
        "lag_at_end_of_load": at_end["lag"],
        "events_applied_during_load": applied_during_load,
        "applied_per_s_during_load": round(applied_during_load / load_s),
        "drain_per_s": round((status["cursor"] - cursor0) / drain_s) if drain_s > 0 else None,
        "seconds_to_catch_up": round(drain_s, 1) if status["lag"] == 0 else None,
        "lag_after_drain": status["lag"],
    }


def store_status(data: Path) -> dict[str, Any]:
    return _json_from("trackyard", "store", "status", "--json", "--data-dir", str(data))


#: The parts of ``store status``'s ``disk_bytes`` that hold the log and its dedup keys.
_STORE_PARTS = ("log", "dedup", "rejects", "other", "free", "wal")


def storage_figures(data: Path, limit_s: float) -> dict[str, Any]:
    """Bytes on disk per stored event beside the canonical JSON's, as written and once the
    retention consumer (running in the server) has compacted the cold log."""

    def figures(status: dict[str, Any]) -> dict[str, Any]:
        events = max(status["events"], 1)
        # Every file of the store, the write-ahead log included (the retention consumer cuts
        # it back once ingest pauses). Not the consumers' own files (profiles, warehouse).
        store = sum(status["disk_bytes"][part] for part in _STORE_PARTS)
        return {
            "events": status["events"],
            "compacted_events": status["compacted_events"],
            "json_bytes_per_event": round(status["json_bytes"] / events, 1),
            "log_bytes_per_event": round(status["log_bytes"] / events, 1),
            "store_bytes_per_event": round(store / events, 1),
            "store_vs_json": round(store / max(status["json_bytes"], 1), 3),
            "wal_bytes": status["disk_bytes"]["wal"],
            "disk_bytes": status["disk_bytes"],
        }

    t0 = time.monotonic()
    first = store_status(data)
    status, last_change, compacted = first, time.monotonic(), first["compacted_events"]
    # Until the hot part is down to its tail (about 20,000 events), the freed pages are back
    # with the OS and the write-ahead log is cut back (the consumer's next rounds, seconds),
    # or compaction stalls.
    while (
        status["events"] - status["compacted_events"] > 25_000
        or status["disk_bytes"]["free"] > 8 << 20
        or status["disk_bytes"]["wal"] > 8 << 20
    ) and time.monotonic() - t0 < limit_s:
        time.sleep(1.0)
        status = store_status(data)
        if status["compacted_events"] != compacted:
            compacted, last_change = status["compacted_events"], time.monotonic()
        elif time.monotonic() - last_change > 15:
            break
    return {
        "as_written": figures(first),
        "compacted": figures(status),
        "compaction_seconds": round(time.monotonic() - t0, 1),
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run (default 10)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server worker processes, same for all (default 1)"
    )
    parser.add_argument(
        "--only",
        help=f"run only scenarios whose name contains this text (e.g. 'batch', '{WAREHOUSE}'; "
        "'delivery' or 'end-to-end': that scenario alone)",
    )
    parser.add_argument(
        "--delivery-events",
        type=int,
        default=20_000,
        help="events ingested at trackyard A for each format of the delivery scenario (default 20,000)",
    )
    parser.add_argument(
        "--warehouse-events",
        type=int,
        default=50_000,
        help="events the warehouse scenario loads into each warehouse (default 50,000)",
    )
    parser.add_argument(
        "--scrape-metrics",
        action="store_true",
        help="GET trackyard's /metrics every second while the scenarios run, as Prometheus would",
    )
    parser.add_argument(
        "--watch-console",
        action="store_true",
        help="start trackyard with an admin token and keep the console's live debugger stream open "
        "(signed in, reading everything it sends) while the scenarios run",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to `trackyard serve` (repeatable): --serve-arg=--no-metrics, --serve-arg=--access-log",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graphs of each trackyard process (ingest, each consumer) during the first "
        "scenario run (choose it with --only), written to bench/results/<run>-<stage>.svg",
    )
    parser.add_argument(
        "--targets",
        default="trackyard,bare,decode",
        help="comma-separated servers to measure (default trackyard,bare,decode: trackyard and its ceilings)",
    )
    from bench import cluster

    cluster.add_arguments(parser)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trackyard-bench-"))
    run_id = f"r{int(time.time())}"
    data = tmp / "data"
    py = sys.executable
    subprocess.run(
        [
            py,
            "-m",
            "trackyard",
            "sources",
            "add",
            "bench",
            "--write-key",
            KEY,
            "--secret",
            SECRET,
            "--data-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    chosen = [s for s in scenarios(tmp) if not args.only or args.only in s.name]
    with_warehouse = not args.only or args.only in WAREHOUSE
    if chosen and not shutil.which("wrk"):
        console.print("[red]wrk is not installed: apt-get install wrk[/red]")
        return 2
    if args.backend != "sqlite":
        return cluster.run(args, chosen, tmp, run_id)
    results: list[Result] = []
    workers = ["--workers", str(args.workers)]
    console_token = secrets.token_urlsafe(24)
    targets = {
        "trackyard": [
            py,
            "-m",
            "trackyard",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
            *workers,
            *(["--admin-token", console_token] if args.watch_console else []),
            *args.serve_arg,
        ],
        "bare": [py, "-m", "bench.serve_ceiling", "bare", *workers],
        "decode": [py, "-m", "bench.serve_ceiling", "decode", *workers],
    }
    chosen_targets = args.targets.split(",")
    targets = {name: command for name, command in targets.items() if name in chosen_targets}
    if not chosen:
        targets = {}  # only the warehouse or delivery scenario: no server to start
    peak: dict[str, int] = {}
    peak_by_stage: dict[str, dict[str, int]] = {}
    peak_pss: dict[str, int] = {}
    peak_pss_by_stage: dict[str, dict[str, int]] = {}
    profiles: dict[str, Any] = {}
    catch_up_s = args.seconds * 12  # how long the consumers are waited for after each load
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"  # names this run's files
    spy = py_spy() if args.profile else None
    if args.profile and spy is None:
        console.print("[red]--profile needs py-spy: pip install -r requirements-dev.txt[/red]")
        return 2
    profiler = FirstLoad(spy, BENCH / "results", stamp)
    loader: dict[str, Any] = {}
    storage: dict[str, Any] = {}
    scrapes: dict[str, Any] | None = None
    watched: dict[str, Any] | None = None
    for target, command in targets.items():
        started = time.monotonic()
        waits: list[tuple[float, int]] = []  # without load: seconds, and events profiles applied
        server = Process(command)
        if not cpu.wait_until_idle(server.proc.pid):
            console.print(f"[yellow]{target} still busy starting after 120 s: measuring anyway[/yellow]")
        load_id = f"{run_id}-{target}"
        consumers_of = data if target == "trackyard" else None  # the ceilings have none
        scraper = MetricsScraper(server.url) if args.scrape_metrics and target == "trackyard" else None
        watcher = (
            ConsoleWatcher(server.url, console_token)
            if args.watch_console and target == "trackyard"
            else None
        )
        try:
            for scenario in chosen:
                console.print(f"[dim]{target}: {scenario.name} ({args.seconds} s)[/dim]")
                load = partial(wrk, server.url, scenario, tmp, args.seconds, load_id)
                with profiler.around(server.proc.pid, wanted=target == "trackyard"):
                    m, extra, waited = measured(server, scenario, load, consumers_of, catch_up_s)
                waits.append(waited)
                results.append(
                    Result(
                        scenario.name,
                        target,
                        m["rps"],
                        m["rps"] * scenario.events,
                        m["p50"],
                        m["p99"],
                        m["non_2xx"],
                        extra,
                    )
                )
                if target == "trackyard" and scenario.name == "segment track":
                    # Latency at half the measured rate: wrk paces each connection.
                    rate = m["rps"] / 2
                    paced = Scenario(
                        scenario.name + " @ half rate",
                        scenario.method,
                        scenario.path,
                        scenario.headers,
                        scenario.body,
                        1,
                        connections=16,
                    )
                    # Measured in steady state: not while the profile consumer still drains
                    # the backlog of the full-speed run, which competes for the same cores.
                    waits.append(drain_backlog(data))
                    load = partial(
                        wrk,
                        server.url,
                        paced,
                        tmp,
                        args.seconds,
                        f"{run_id}-paced",
                        delay_ms=16 * 1000 / rate,
                    )
                    p, extra, waited = measured(server, paced, load, consumers_of, catch_up_s)
                    waits.append(waited)
                    results.append(
                        Result(
                            paced.name, target, p["rps"], p["rps"], p["p50"], p["p99"], p["non_2xx"], extra
                        )
                    )
            batch = next((sc for sc in chosen if sc.name == "segment batch 100"), None)
            if target == "trackyard" and batch is not None:
                # Overload: far more concurrent batches than the server can take. It must
                # shed load (429 with Retry-After) with bounded memory, not queue forever.
                flood = Scenario(
                    "overload: batch 100 x 512 conns",
                    batch.method,
                    batch.path,
                    batch.headers,
                    batch.body,
                    100,
                    connections=512,
                )
                load = partial(wrk, server.url, flood, tmp, args.seconds, f"{run_id}-flood")
                o, extra, waited = measured(server, flood, load, consumers_of, catch_up_s)
                waits.append(waited)
                ok_rps = o["rps"] - o["non_2xx"] / args.seconds
                results.append(
                    Result(
                        flood.name,
                        target,
                        o["rps"],
                        ok_rps * 100,
                        o["p50"],
                        o["p99"],
                        o["non_2xx"],
                        {**extra, "rss_mb_after": round(server.peak_rss_kb / 1024, 1)},
                    )
                )
            if target == "trackyard":
                # serve runs the warehouse loader too (into its DuckDB file): how far behind
                # the load it is at the end, and once the profile consumer has caught up.
                loader["lag_at_end_of_load"] = warehouse_lag(data)
                paused = (sum(w[0] for w in waits), sum(w[1] for w in waits))
                profiles = consumer_catch_up(data, started, args.seconds * 12, paused)
                storage = storage_figures(data, args.seconds * 12)
                loader["lag_after_profiles_caught_up"] = warehouse_lag(data)
            peak[target] = server.peak_rss_kb
            peak_by_stage[target] = dict(server.rss.by_stage_kb)
            peak_pss[target] = server.rss.total_pss_kb
            peak_pss_by_stage[target] = dict(server.rss.pss_by_stage_kb)
        finally:
            if scraper is not None:
                scrapes = scraper.stop()
            if watcher is not None:
                watched = watcher.stop()
            server.stop()
    stored = (
        0
        if not chosen
        else int(
            subprocess.run(
                [
                    py,
                    "-c",
                    # Seqs are dense from 1 (docs/storage.md), so the head is the number stored.
                    "import sys;from pathlib import Path;from trackyard.config import Settings;"
                    "from trackyard.storage.factory import open_backends;"
                    "b=open_backends(Settings(data_dir=Path(sys.argv[1])));print(b.log.head_seq());b.close()",
                    str(data),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    )
    report = build_report(results, peak, stored, args)
    report["peak_rss_mb_by_stage"] = {
        target: {stage: round(kb / 1024, 1) for stage, kb in stages.items()}
        for target, stages in peak_by_stage.items()
    }
    # PSS splits the pages processes share (code, libraries) between them: see bench/cpu.py.
    report["peak_pss_mb"] = {target: round(kb / 1024, 1) for target, kb in peak_pss.items()}
    report["peak_pss_mb_by_stage"] = {
        target: {stage: round(kb / 1024, 1) for stage, kb in stages.items()}
        for target, stages in peak_pss_by_stage.items()
    }
    report["profile_files"] = [str(path.relative_to(REPO)) for path in profiler.files]
    for problem in profiler.problems:
        console.print(f"[yellow]py-spy: {problem}[/yellow]")
    report["profiles"] = profiles
    report["storage"] = storage
    if not args.only or "delivery" in args.only:
        sys.path.insert(0, str(REPO))  # run as `python bench/run.py`: the bench package from the repo
        from bench import delivery

        console.print("[dim]delivery: from trackyard A's log to a receiver, per format[/dim]")
        report["delivery"] = delivery.run_all(args.delivery_events, args.seconds)
    if not args.only or args.only in "end-to-end":
        sys.path.insert(0, str(REPO))
        from bench import endtoend

        console.print("[dim]end-to-end: the events/s at which every stage keeps up[/dim]")
        report["end_to_end"] = endtoend.run(args.seconds)
    if loader:
        report["warehouse_loader_under_serve"] = loader
    if with_warehouse:
        report["warehouse"] = warehouse_scenario(args.warehouse_events)
    report["serve_args"] = args.serve_arg
    report["metrics_scrapes"] = scrapes
    report["console_watch"] = watched
    out = BENCH / "results" / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    console.print(f"written to {out.relative_to(REPO)}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def build_report(
    results: list[Result], peak: dict[str, int], stored: int, args: argparse.Namespace
) -> dict[str, Any]:
    by = {(r.scenario, r.target): r for r in results}
    rows = []
    for r in results:
        if r.target != "trackyard":
            continue
        bare, decode = by.get((r.scenario, "bare")), by.get((r.scenario, "decode"))
        rows.append(
            {
                **asdict(r),
                "vs_bare": r.requests_per_s / bare.requests_per_s if bare else None,
                "vs_decode": r.requests_per_s / decode.requests_per_s if decode else None,
                "bare_rps": bare.requests_per_s if bare else None,
                "decode_rps": decode.requests_per_s if decode else None,
                **cpu.beside_ceilings(
                    r.extra, bare.extra if bare else None, decode.extra if decode else None
                ),
            }
        )
    return {
        "machine": machine(),
        "workers": args.workers,
        "seconds": args.seconds,
        "rows": rows,
        "ceilings": [asdict(r) for r in results if r.target != "trackyard"],
        "peak_rss_mb": {k: round(v / 1024, 1) for k, v in peak.items()},
        "events_stored": stored,
    }


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    table = Table(title=f"trackyard vs ceilings: {m['cores']} cores, {m['cpu']}, workers={report['workers']}")
    for col in (
        "scenario",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "bare req/s",
        "vs bare",
        "decode req/s",
        "vs decode",
        "CPU µs/req",
    ):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in report["rows"]:

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.0%}"

        table.add_row(
            r["scenario"],
            f"{r['requests_per_s']:,.0f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            str(r["non_2xx"]),
            f"{r['bare_rps'] or 0:,.0f}",
            pct(r["vs_bare"]),
            f"{r['decode_rps'] or 0:,.0f}",
            pct(r["vs_decode"]),
            str(r["extra"].get("server_cpu_us_per_request", "-")),
        )
    if report["rows"]:
        out_console.print(table)
        cpu.print_table(report, out_console)
        out_console.print(
            f"peak RSS (MB): {report['peak_rss_mb']}; events stored by trackyard: {report['events_stored']:,}"
        )
        out_console.print(f"profile consumer: {report.get('profiles')}")
        out_console.print(f"peak RSS by stage (MB): {report.get('peak_rss_mb_by_stage')}")
        out_console.print(
            f"peak PSS (MB, shared pages split between processes): {report.get('peak_pss_mb')}; "
            f"by stage: {report.get('peak_pss_mb_by_stage')}"
        )
        for path in report.get("profile_files", []):
            out_console.print(f"flame graph: {path}")
        for when, figures in report.get("storage", {}).items():
            if isinstance(figures, dict):
                out_console.print(
                    f"bytes on disk per event ({when}): store {figures['store_bytes_per_event']}"
                    f" ({figures['store_vs_json']:.2f}x the JSON's {figures['json_bytes_per_event']}),"
                    f" of which log {figures['log_bytes_per_event']}; {figures['compacted_events']:,}"
                    f" of {figures['events']:,} events compacted; WAL {figures['wal_bytes'] / 1e6:.0f} MB"
                )
        if report.get("metrics_scrapes"):
            out_console.print(f"/metrics scraped every second: {report['metrics_scrapes']}")
        if report.get("console_watch"):
            out_console.print(f"console debugger watched: {report['console_watch']}")
    if "delivery" in report:
        from bench import delivery  # importable: main put the repo on the path

        delivery.print_table(report["delivery"])
    if "end_to_end" in report:
        from bench.endtoend import describe as describe_end_to_end

        out_console.print(describe_end_to_end(report["end_to_end"]))
    if "warehouse_loader_under_serve" in report:
        out_console.print(f"warehouse loader under serve: {report['warehouse_loader_under_serve']}")
    if "warehouse" in report:
        from bench.warehouse import describe

        out_console.print(f"{WAREHOUSE} (the loader alone over a prepared log):")
        for name, figures in report["warehouse"].items():
            out_console.print(describe(name, figures))


if __name__ == "__main__":
    sys.exit(main())

"""The delivery scenario of `make bench`: from trackyard A's log to a receiver, per format.

For each format, a fresh trackyard A (one worker) and a receiver: a second trackyard B for
`segment` (and `koala`, `bloomreach`, `vitally` when `destinations add` takes them; a
refused format is reported "not available"), a trivial HTTP server that answers 200 for
`webhook`. Two phases:

- **throughput**: the destination is added and its process started (its start-up is not
  counted); then A's log is filled with ``--events`` events through its `/v1/batch` (100
  a request) as fast as A takes them, while the destination delivers. Measured: ingest
  events/s and the CPU of A's server process per ingested event; events/s delivered
  (events over the time from the first request until the destination's lag is 0), the
  lag when ingest ended, and the CPU of the destination's own process (``/proc/PID/stat``)
  per delivered event.
- **latency**: with delivery caught up, batches of 10 events are sent to A at a steady
  pace for ``--seconds``; for each event, the time from A's acknowledgement (A's
  ``receivedAt``) to its storage at B (B's ``receivedAt``; the webhook receiver's clock
  on arrival), p50 and p99.

`python -m bench.delivery [--events N] [--seconds S] [--only FORMAT]`, or as part of
`python bench/run.py` (`--only delivery` for this alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.cpu import cpu_seconds as _cpu_seconds
from bench.run import Process

KEY_A = "benchdeliverya00000000000000000000"
KEY_B = "benchdeliveryb00000000000000000000"
TOKEN = "bench-admin-token"
FORMATS = ("segment", "webhook", "koala", "bloomreach", "vitally")
console = Console(stderr=True)


def _trackyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackyard", *args], capture_output=True, text=True, check=False
    )


def _serve(data: Path) -> Process:
    command = [sys.executable, "-m", "trackyard", "serve", "--port", "0", "--data-dir", str(data)]
    return Process([*command, "--log-level", "warning", "--admin-token", TOKEN])


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class WebhookReceiver:
    """The trivial receiver: answers 200, notes when each messageId arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                events = json.loads(body)
                for event in events if isinstance(events, list) else [events]:
                    hook.arrived.setdefault(event["messageId"], now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def bench_event(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        # An email: Koala names people by email, and skips events without one.
        "userId": f"user-{n % 1000}@bench.example",
        "messageId": f"{run}-{n}",
        # The id again where every format carries it: Bloomreach has no messageId, and Vitally's
        # is stored as TYPE:id at the receiver.
        "properties": {"product_id": "sku-1042", "price": 129.5, "currency": "EUR", "bench_id": f"{run}-{n}"},
        "context": {"library": {"name": "bench", "version": "1.0"}},
        "timestamp": "2026-01-01T12:00:00.000Z",
    }


def _send(client: httpx.Client, url: str, events: list[dict[str, Any]]) -> None:
    response = client.post(f"{url}/v1/batch", json={"batch": events}, auth=(KEY_A, ""))
    response.raise_for_status()


def _destination_pid(data: Path, name: str, deadline: float) -> int:
    """The pid of the destination's process (its cmdline names its consumer)."""
    wanted = f"destination:{name}".encode()
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                    environ = (entry / "environ").read_bytes()
                except OSError:
                    continue
                if wanted in cmdline and str(data).encode() in environ:
                    return int(entry.name)
        time.sleep(0.05)
    raise RuntimeError(f"no process for destination {name}")


def _lag(client: httpx.Client, a: Process, name: str) -> int:
    response = client.get(f"{a.url}/v1/destinations/{name}", headers={"Authorization": f"Bearer {TOKEN}"})
    return int(response.json()["lag"])


def _received(url: str, after_run: str) -> dict[str, float]:
    """messageId → receivedAt (epoch s) of a trackyard's events of one run, via its admin API."""
    found: dict[str, float] = {}
    after = 0
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        while True:
            page = client.get(f"{url}/v1/events", params={"after": after, "limit": 1000}).json()
            if not page["events"]:
                return found
            for event in page["events"]:
                bench_id = (event.get("properties") or {}).get("bench_id") or event["messageId"]
                if bench_id.startswith(after_run):
                    found[bench_id] = _epoch(event["receivedAt"])
            after = page["next"]


def _arrived(hook: WebhookReceiver | None, b: Process | None) -> dict[str, float]:
    if hook is not None:
        return {k: v for k, v in list(hook.arrived.items()) if k.startswith("pace")}
    assert b is not None
    return _received(b.url, "pace")


def _wait_idle(pid: int) -> None:
    """Until the process's CPU time stops growing (it has started and waits for events)."""
    last = -1.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _cpu_seconds(pid)
        if now - last < 0.02:
            return
        last = now
        time.sleep(0.3)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def run_format(kind: str, events: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """One format's figures, or ``{"format": kind, "available": False, "why": ...}``."""
    a_dir, b_dir = tmp / f"{kind}-a", tmp / f"{kind}-b"
    _trackyard("sources", "add", "bench", "--write-key", KEY_A, "--data-dir", str(a_dir))
    b: Process | None = None
    hook: WebhookReceiver | None = None
    if kind == "webhook":
        hook = WebhookReceiver()
        target = ["--url", hook.url]
    else:
        _trackyard("sources", "add", "bench", "--write-key", KEY_B, "--data-dir", str(b_dir))
        b = _serve(b_dir)
        target = ["--url", b.url, "--key", KEY_B]
    a = _serve(a_dir)
    client = httpx.Client(timeout=60)
    try:
        added = _trackyard("destinations", "add", "to-b", "--format", kind, *target, "--data-dir", str(a_dir))
        if added.returncode != 0:
            said = (added.stderr or added.stdout).strip().splitlines() or ["refused"]
            return {"format": kind, "available": False, "why": said[-1]}
        pid = _destination_pid(a_dir, "to-b", time.monotonic() + 30)
        _wait_idle(pid)  # its start-up (imports) is not delivery work
        # Throughput: fill A's log while the destination delivers, until its lag is 0.
        cpu_a, cpu_d = _cpu_seconds(a.proc.pid), _cpu_seconds(pid)
        started = time.monotonic()
        for start in range(0, events, 100):
            _send(client, a.url, [bench_event(n, "fill") for n in range(start, min(start + 100, events))])
        ingest_s = time.monotonic() - started
        ingest_cpu = _cpu_seconds(a.proc.pid) - cpu_a
        behind = _lag(client, a, "to-b")
        while _lag(client, a, "to-b") > 0:
            time.sleep(0.05)
        deliver_s = time.monotonic() - started
        deliver_cpu = _cpu_seconds(pid) - cpu_d
        # Latency: a steady pace of small batches, each event's ack at A to storage at B.
        sent = 0
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            _send(client, a.url, [bench_event(n, "pace") for n in range(sent, sent + 10)])
            sent += 10
            time.sleep(0.01)  # the pace of the load, not a synchronisation
        deadline = time.monotonic() + 60
        while _lag(client, a, "to-b") > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        at_a = _received(a.url, "pace")
        deadline = time.monotonic() + 30
        while len(at_b := _arrived(hook, b)) < len(at_a) and time.monotonic() < deadline:
            time.sleep(0.1)
        latencies = [(at_b[k] - at_a[k]) * 1000 for k in at_a if k in at_b]
        return {
            "format": kind,
            "available": True,
            "events": events,
            "ingest_events_per_s": round(events / ingest_s),
            "lag_when_ingest_ended": behind,
            "delivered_events_per_s": round(events / deliver_s),
            "cpu_us_per_ingested_event": round(ingest_cpu / events * 1e6, 1),
            "cpu_us_per_delivered_event": round(deliver_cpu / events * 1e6, 1),
            "latency_events": len(latencies),
            "latency_missing": len(at_a) - len(latencies),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p99_ms": round(_percentile(latencies, 0.99), 1) if latencies else None,
            "paced_events_per_s": round(sent / seconds),
        }
    finally:
        client.close()
        a.stop()
        if b is not None:
            b.stop()
        if hook is not None:
            hook.close()


def run_all(events: int, seconds: float, only: str | None = None) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="trackyard-delivery-"))
    results = []
    for kind in FORMATS:
        if only and only not in kind:
            continue
        console.print(f"[dim]delivery: {kind} ({events:,} events, then {seconds:.0f} s paced)[/dim]")
        results.append(run_format(kind, events, seconds, tmp))
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    table = Table(title="delivery from trackyard A's log")
    columns = (
        "format",
        "delivered ev/s",
        "ingest ev/s",
        "CPU µs/delivered",
        "CPU µs/ingested",
        "p50 ms",
        "p99 ms",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "format" else "right")
    for r in results:
        if not r["available"]:
            table.add_row(r["format"], "not available", "", "", "", "", "")
            continue
        table.add_row(
            r["format"],
            f"{r['delivered_events_per_s']:,}",
            f"{r['ingest_events_per_s']:,}",
            str(r["cpu_us_per_delivered_event"]),
            str(r["cpu_us_per_ingested_event"]),
            str(r["latency_p50_ms"]),
            str(r["latency_p99_ms"]),
        )
    Console(width=150).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events in A's log (default 20,000)")
    parser.add_argument("--seconds", type=float, default=5, help="seconds of paced load (default 5)")
    parser.add_argument("--only", help="only formats whose name contains this text")
    args = parser.parse_args()
    results = run_all(args.events, args.seconds, args.only)
    print_table(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

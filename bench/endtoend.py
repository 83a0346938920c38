"""The end-to-end scenario of `make bench`: the sustained events/s at which every stage of
the default install keeps up.

One `trackyard serve` as installed (one worker; the profile consumer, the warehouse
loader into the embedded DuckDB file, retention and metrics) with one destination: a
`webhook` to a trivial receiver in this process (the cheapest receiver, so the figure is
trackyard's and not a second server's). Segment batches of 100 events (1,000 users) are
sent at a steady rate R for ``--seconds``, on a fixed schedule (a request is due every
100/R s, whatever the answers' times), from a few threads.

R **keeps up** when ingest answered every request `200` at 95% of R or more, and at the end
of the load every stage (the profile consumer, the warehouse loader, the destination) is
less than ``LAG_SECONDS`` of load behind the log's head (lag < R x 2 s): a stage that only
keeps up by queueing grows its lag with the load's length, and fails. Between trials the
stages are let catch up. R starts at ``--e2e-start`` and doubles while it keeps up, then is
bisected between the highest that kept up and the lowest that did not, to within 10%.

`python -m bench.endtoend [--seconds S] [--start R]`, or `python bench/run.py --only
end-to-end`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import sample
from bench.delivery import WebhookReceiver, bench_event, console
from bench.run import Process

KEY = "benche2e000000000000000000000000000"
SCENARIO = "end-to-end"
#: The stages that handle every event, beside ingest: their lag decides "keeps up".
STAGES = ("profiles", "warehouse", "destination:hook")
#: A stage may be at most this many seconds of the load behind the head when the load ends.
LAG_SECONDS = 2.0
#: Threads sending the schedule's requests (each waits for its answer).
SENDERS = 8


def _trackyard(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trackyard", *args, "--data-dir", str(data)]
    return subprocess.run(command, capture_output=True, text=True, check=True)


def _lags(data: Path) -> dict[str, int]:
    """Each stage's lag behind the log's head (``trackyard consumers status --json``)."""
    out = _trackyard(data, "consumers", "status", "--json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["name"]: int(row["lag"] or 0) for row in rows if row["name"] in STAGES}


def _drain(data: Path, limit_s: float = 180.0) -> float:
    """Wait until every stage has caught up; the seconds it took."""
    started = time.monotonic()
    while any(_lags(data).values()) and time.monotonic() - started < limit_s:
        time.sleep(0.2)
    return time.monotonic() - started


class _Load:
    """Batches of 100 sent on a fixed schedule at ``rate`` events/s for ``seconds``."""

    def __init__(self, url: str, rate: int, seconds: float, run: str) -> None:
        self.url, self.rate = url, rate
        # Encoded before the clock starts, so that the sender's own work does not pace it.
        requests = max(1, round(rate * seconds / 100))
        self._bodies = [
            json.dumps({"batch": [bench_event(i, run) for i in range(n * 100, n * 100 + 100)]}).encode()
            for n in range(requests)
        ]
        self.ok = self.failed = 0
        self._next = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            n = self._next
            if n >= len(self._bodies):
                return None
            self._next += 1
            return n

    def _sender(self, started: float) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=30, auth=(KEY, ""), headers=headers) as client:
            while (n := self._take()) is not None:
                due = started + n * 100 / self.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)  # the schedule of the load, not a synchronisation
                try:
                    answer = client.post(f"{self.url}/v1/batch", content=self._bodies[n])
                    good = answer.status_code == 200
                except httpx.HTTPError:
                    good = False
                with self._lock:
                    self.ok += good
                    self.failed += not good

    def run(self) -> float:
        """Send it all; the events/s achieved (acknowledged events over the time taken)."""
        started = time.monotonic()
        threads = [threading.Thread(target=self._sender, args=(started,)) for _ in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.ok * 100 / max(time.monotonic() - started, 1e-9)


def _trial(data: Path, url: str, pid: int, rate: int, seconds: float) -> dict[str, Any]:
    before = sample(pid).cpu_s
    load = _Load(url, rate, seconds, f"e2e-{rate}-{time.time_ns()}")
    achieved = load.run()
    lags = _lags(data)
    after = sample(pid).cpu_s
    kept_up = (
        load.failed == 0
        and achieved >= 0.95 * rate
        and all(lag < rate * LAG_SECONDS for lag in lags.values())
    )
    catch_up = _drain(data)
    events = load.ok * 100
    cpu = {
        stage: round((after.get(stage, 0.0) - before.get(stage, 0.0)) / max(events, 1) * 1e6, 1)
        for stage in after
    }
    console.print(
        f"[dim]{SCENARIO}: {rate:,} events/s -> {achieved:,.0f} acknowledged, lags {lags},"
        f" {'kept up' if kept_up else 'fell behind'}[/dim]"
    )
    return {
        "rate": rate,
        "achieved_events_per_s": round(achieved),
        "failed_requests": load.failed,
        "lag_at_end": lags,
        "seconds_to_catch_up": round(catch_up, 1),
        "cpu_us_per_event_by_stage": cpu,
        "kept_up": kept_up,
    }


def run(seconds: float = 10.0, start: int = 2_000) -> dict[str, Any]:
    """The trials and the sustained rate: the highest R that kept up."""
    tmp = Path(tempfile.mkdtemp(prefix="trackyard-e2e-"))
    data = tmp / "data"
    _trackyard(data, "sources", "add", "bench", "--write-key", KEY)
    hook = WebhookReceiver()
    _trackyard(data, "destinations", "add", "hook", "--format", "webhook", "--url", hook.url)
    server = Process(
        [
            sys.executable,
            "-m",
            "trackyard",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ]
    )
    trials: list[dict[str, Any]] = []
    try:
        _Load(server.url, 2_000, 1, "warm-up").run()  # every consumer started and past its imports
        _drain(data)
        good, bad, rate = 0, 0, start
        while not bad and rate <= 128_000:
            trials.append(_trial(data, server.url, server.proc.pid, rate, seconds))
            good, bad, rate = (rate, 0, rate * 2) if trials[-1]["kept_up"] else (good, rate, rate)
        while bad and good and bad - good > 0.1 * good:
            rate = (good + bad) // 2
            trials.append(_trial(data, server.url, server.proc.pid, rate, seconds))
            good, bad = (rate, bad) if trials[-1]["kept_up"] else (good, rate)
        peak_rss_mb = round(server.peak_rss_kb / 1024, 1)
    finally:
        server.stop()
        hook.close()
    return {
        "seconds": seconds,
        "sustained_events_per_s": good,
        "first_rate_not_kept_up": bad or None,
        "peak_rss_mb": peak_rss_mb,
        "trials": trials,
    }


def describe(report: dict[str, Any]) -> str:
    good = report["sustained_events_per_s"]
    kept = [t for t in report["trials"] if t["kept_up"] and t["rate"] == good]
    cpu = ", ".join(
        f"{stage} {us}" for stage, us in (kept[0]["cpu_us_per_event_by_stage"] if kept else {}).items()
    )
    return (
        f"{SCENARIO}: every stage (ingest, profiles, warehouse, a webhook destination) kept up with"
        f" {good:,} events/s of Segment batches (not with {report['first_rate_not_kept_up'] or '-'});"
        f" CPU µs an event there: {cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of each trial's load (default 10)"
    )
    parser.add_argument(
        "--start", type=int, default=2_000, help="the first rate tried, events/s (default 2,000)"
    )
    args = parser.parse_args()
    report = run(args.seconds, args.start)
    print(json.dumps(report, indent=2))
    console.print(describe(report))


if __name__ == "__main__":
    main()

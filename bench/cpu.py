"""CPU time and memory of every process of a server under test, by stage, from ``/proc``.

trackyard's processes are ``serve`` and everything below it: with ``--workers N`` the HTTP
workers (multiprocessing's spawned children) and its resource tracker, and one process per
consumer (``python -m trackyard.consumers._child NAME``: ``profiles``, ``warehouse``, each
``destination:NAME``). A process's stage is the consumer it runs, else ``ingest``: the HTTP
workers with the writer thread they feed. CPU is user + system time of all of a process's
threads (``/proc/PID/stat``), which on a shared machine varies far less than throughput.

Ingest is charged for the load run alone (sampled before and after wrk); a consumer for
the load run and the time it then takes to catch up with the log's head, divided by the
events it applied meanwhile (its cursor's advance), so each stage's figure is per event it
handled. A process that exits inside a window takes its CPU with it (a consumer restart).

Memory is sampled as RSS and PSS. Summed over processes, RSS counts a page shared by
several of them (the interpreter's and the libraries' code, what a worker inherits) once
in each; PSS (``/proc/PID/smaps_rollup``) splits each shared page between its sharers, so
the PSS sum is the memory the tree really takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

INGEST = "ingest"
_CONSUMER_MODULE = b"trackyard.consumers._child"
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
T = TypeVar("T")


def processes(root: int) -> list[int]:
    """``root`` and every process below it (the children of each of their threads)."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                queue += [int(child) for child in children.read_text().split()]
            except OSError:
                continue  # the thread or process has just ended
    return found


def stage_of(pid: int) -> str:
    """The consumer process ``pid`` runs, else ``ingest``; OSError when it has ended."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if _CONSUMER_MODULE in args:
        at = args.index(_CONSUMER_MODULE) + 1
        if at < len(args):
            return args[at].decode()
    return INGEST


def _stat(pid: int) -> tuple[float, int]:
    """CPU seconds used (user + system) and RSS in KB; OSError when it has ended."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[21]) * _PAGE_KB  # utime, stime; rss


def pss_kb(pid: int) -> int:
    """Process ``pid``'s proportional set size in KB; OSError when it has ended."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 when it has ended."""
    try:
        return _stat(pid)[0]
    except OSError:
        return 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a process tree: per stage, the CPU seconds used so far, the RSS and PSS
    (KB; PSS only when asked for) and pids."""

    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_kb: dict[str, int] = field(default_factory=dict)
    pss_kb: dict[str, int] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total_rss_kb(self) -> int:
        return sum(self.rss_kb.values())

    @property
    def total_pss_kb(self) -> int:
        return sum(self.pss_kb.values())

    def cpu_since(self, earlier: Sample) -> dict[str, float]:
        """CPU seconds each stage used between ``earlier`` and this sample."""
        return {stage: max(cpu - earlier.cpu_s.get(stage, 0.0), 0.0) for stage, cpu in self.cpu_s.items()}


def sample(root: int, pss: bool = False) -> Sample:
    out = Sample()
    for pid in processes(root):
        try:
            stage = stage_of(pid)
            cpu, rss = _stat(pid)
            proportional = pss_kb(pid) if pss else 0
        except OSError:
            continue
        out.cpu_s[stage] = out.cpu_s.get(stage, 0.0) + cpu
        out.rss_kb[stage] = out.rss_kb.get(stage, 0) + rss
        if pss:
            out.pss_kb[stage] = out.pss_kb.get(stage, 0) + proportional
        out.pids.setdefault(stage, []).append(pid)
    return out


def wait_until_idle(root: int, limit_s: float = 120, busy_s: float = 0.05, every_s: float = 0.5) -> bool:
    """Wait until the tree at ``root`` has started: the same processes in two looks ``every_s``
    apart, using less than ``busy_s`` CPU seconds between them. A server prints its URL before
    its HTTP workers and consumers have imported their modules; without this their start-up
    would be charged to the first scenario. False when it is still busy after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    before = sample(root)
    while time.monotonic() < deadline:
        time.sleep(every_s)
        now = sample(root)
        same = sorted(sum(now.pids.values(), [])) == sorted(sum(before.pids.values(), []))
        if same and sum(now.cpu_since(before).values()) < busy_s:
            return True
        before = now
    return False


class PeakRss:
    """Samples a process tree's RSS and PSS every ``interval`` seconds: the peak of each sum
    over all its processes (at one instant), and each stage's own peaks."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.total_kb = 0
        self.by_stage_kb: dict[str, int] = {}
        self.total_pss_kb = 0
        self.pss_by_stage_kb: dict[str, int] = {}
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="peak-rss", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = sample(self._root, pss=True)
            self.total_kb = max(self.total_kb, now.total_rss_kb)
            self.total_pss_kb = max(self.total_pss_kb, now.total_pss_kb)
            for stage, kb in now.rss_kb.items():
                self.by_stage_kb[stage] = max(self.by_stage_kb.get(stage, 0), kb)
            for stage, kb in now.pss_kb.items():
                self.pss_by_stage_kb[stage] = max(self.pss_by_stage_kb.get(stage, 0), kb)

    def stop(self) -> None:
        self._stop.set()


def consumer_positions(data: Path) -> tuple[int, dict[str, int | None]]:
    """The log's head and each consumer's cursor (``trackyard consumers status --json``)."""
    out = subprocess.run(
        [sys.executable, "-m", "trackyard", "consumers", "status", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    head = max((int(row["head"]) for row in rows), default=0)
    return head, {row["name"]: row["cursor"] for row in rows}


def _caught_up(head: int, cursors: dict[str, int | None]) -> bool:
    return all(cursor is not None and cursor >= head for cursor in cursors.values())


@dataclass(frozen=True, slots=True)
class StageCost:
    """What one load run cost each stage, and what the consumers applied for it."""

    ingest_cpu_s: float
    consumer_cpu_s: dict[str, float]
    applied: dict[str, int | None]
    #: What each consumer applied while it was waited for, after the load had stopped.
    applied_after_load: dict[str, int | None]
    caught_up: bool
    waited_s: float

    def fields(self, requests: int, events: int) -> dict[str, Any]:
        """The JSON fields of a result row: ``events`` are those the load had acknowledged."""
        per_event = {
            name: round(self.consumer_cpu_s.get(name, 0.0) * 1e6 / applied, 2) if applied else None
            for name, applied in self.applied.items()
        }
        return {
            "server_cpu_us_per_request": round(self.ingest_cpu_s * 1e6 / max(requests, 1), 1),
            "ingest_cpu_us_per_event": round(self.ingest_cpu_s * 1e6 / max(events, 1), 2),
            "consumer_cpu_us_per_event": per_event,
            "consumer_events_applied": self.applied,
            "consumers_caught_up": self.caught_up,
            "consumers_catch_up_s": round(self.waited_s, 1),
        }


def _advance(before: dict[str, int | None], after: dict[str, int | None]) -> dict[str, int | None]:
    """How far each consumer's cursor moved (``None`` where either is unknown)."""
    return {
        name: None if cursor is None or before.get(name) is None else cursor - (before[name] or 0)
        for name, cursor in after.items()
    }


def measure(root: int, load: Callable[[], T], data: Path | None, catch_up_s: float) -> tuple[T, StageCost]:
    """Run ``load`` against the process tree at ``root`` and charge each stage its CPU.

    With ``data`` (trackyard's data dir) the consumers are waited for until they reach the
    head the load left (at most ``catch_up_s`` seconds); without it (a ceiling) there are none.
    """
    start = sample(root)
    cursors0 = consumer_positions(data)[1] if data else {}
    result = load()
    end_of_load = sample(root)
    waited, caught_up, cursors = 0.0, True, cursors0
    at_end_of_load = cursors0
    if data:
        head, cursors = consumer_positions(data)
        at_end_of_load = cursors
        t0 = time.monotonic()
        while not (caught_up := _caught_up(head, cursors)) and time.monotonic() - t0 < catch_up_s:
            time.sleep(0.5)
            cursors = consumer_positions(data)[1]
        waited = time.monotonic() - t0
    end = sample(root)
    consumers = end.cpu_since(start)
    cost = StageCost(
        end_of_load.cpu_since(start).get(INGEST, 0.0),
        {name: cpu for name, cpu in consumers.items() if name != INGEST},
        _advance(cursors0, cursors),
        _advance(at_end_of_load, cursors),
        caught_up,
        waited,
    )
    return result, cost


def beside_ceilings(
    row: dict[str, Any], bare: dict[str, Any] | None, decode: dict[str, Any] | None
) -> dict[str, Any]:
    """A trackyard row's CPU beside its ceilings' in the same run: ``row``, ``bare``, ``decode``
    are the results' ``extra`` fields."""
    decode_ev = decode.get("ingest_cpu_us_per_event") if decode else None
    bare_req = bare.get("server_cpu_us_per_request") if bare else None
    ingest_ev, ingest_req = row.get("ingest_cpu_us_per_event"), row.get("server_cpu_us_per_request")
    return {
        "decode_cpu_us_per_event": decode_ev,
        "bare_cpu_us_per_request": bare_req,
        "ingest_cpu_vs_decode": round(ingest_ev / decode_ev, 2) if ingest_ev and decode_ev else None,
        "cpu_vs_bare": round(ingest_req / bare_req, 2) if ingest_req and bare_req else None,
    }


def print_table(report: dict[str, Any], out: Console) -> None:
    """The CPU table: ingest per request and per event beside the ceilings, and each consumer
    per event it applied."""
    rows = report["rows"]
    consumers = sorted({name for r in rows for name in r["extra"].get("consumer_cpu_us_per_event", {})})
    table = Table(title="CPU µs (user + system) by stage; consumers per event applied")
    columns = ["scenario", "ingest /req", "bare /req", "× bare", "ingest /event", "decode /event", "× decode"]
    for col in [*columns, *[f"{name} /event" for name in consumers], "caught up"]:
        table.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=col == "scenario")

    def num(v: float | None, fmt: str = "{:,.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    for r in rows:
        extra, per_event = r["extra"], r["extra"].get("consumer_cpu_us_per_event", {})
        table.add_row(
            r["scenario"],
            num(extra.get("server_cpu_us_per_request")),
            num(r.get("bare_cpu_us_per_request")),
            num(r.get("cpu_vs_bare"), "{:.2f}×"),
            num(extra.get("ingest_cpu_us_per_event"), "{:,.2f}"),
            num(r.get("decode_cpu_us_per_event"), "{:,.2f}"),
            num(r.get("ingest_cpu_vs_decode"), "{:.2f}×"),
            *[num(per_event.get(name)) for name in consumers],
            "-" if "consumers_caught_up" not in extra else "yes" if extra["consumers_caught_up"] else "no",
        )
    out.print(table)

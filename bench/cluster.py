"""``make bench BENCH_ARGS="--backend nats|postgresql"``: the scenarios on one and two
collector nodes of a cluster, beside the embedded default, in one run.

Three layouts, each ``trackyard serve --role ingest`` (no consumers, so the figures are the
collectors' own): the embedded default (SQLite in a data dir), then one and two stateless
nodes on the cluster this module starts: for ``nats`` three clustered ``nats-server``
processes on loopback (an R3 stream) and a fresh PostgreSQL database for the state; for
``postgresql`` the fresh database holds the state and the log. With two nodes a wrk per
node drives both at once, as a load balancer would. Each row gives events/s, p99 and the
CPU per event of each node (user + system time from ``/proc``), so the scaling a machine
with more cores would show can be read off where the two nodes share the cores. On the
cluster's one node, a batch of 100 is also timed at half the measured rate (the goal on R3:
p99 under 20 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.run import (
    BENCH,
    KEY,
    REPO,
    SECRET,
    Process,
    Scenario,
    console,
    out_console,
    write_gzip_bodies,
    wrk,
)

HALF_LOAD_SCENARIO = "segment batch 100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["sqlite", "nats", "postgresql"],
        default="sqlite",
        help="sqlite (default): the embedded store against its ceilings. nats or postgresql: the "
        "scenarios on one and two `serve --role ingest` nodes on a cluster the bench starts (3 "
        "nats-servers and a fresh PostgreSQL database, or the database alone), beside the embedded "
        "default (bench/cluster.py)",
    )
    parser.add_argument(
        "--nats-gomaxprocs",
        type=int,
        default=1,
        metavar="N",
        help="GOMAXPROCS of each of the three nats-servers of --backend nats (default 1: they share this "
        "machine's cores; 0: Go's default, one a core)",
    )


def _add_source(env: dict[str, str], data_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "trackyard", "sources", "add", "bench", "--write-key", KEY, "--secret", SECRET,
         "--data-dir", str(data_dir)],
        check=True, capture_output=True, env=env, cwd=REPO,
    )  # fmt: skip


def _serve(data_dir: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "trackyard", "serve", "--role", "ingest", "--port", "0",
            "--data-dir", str(data_dir), "--log-level", "warning", "--workers", str(workers)]  # fmt: skip


def _fresh_ids(scenario: Scenario, tmp: Path, tag: str) -> Scenario:
    """``scenario`` with gzip bodies of its own for ``tag``: the cluster layouts share one
    dedup window, so bodies replayed on another layout or node would be duplicates, answered
    without a publish."""
    if scenario.gzip_template is None:
        return scenario
    bodies = write_gzip_bodies(tmp / f"{tag}.gz.bodies", scenario.gzip_template, tag)
    return dataclasses.replace(scenario, body=f"BODIES {bodies}")


def _measure(
    nodes: list[Process], scenario: Scenario, tmp: Path, seconds: int, run_id: str, delay_ms: float = 0
) -> list[dict[str, Any]]:
    """One wrk per node at once; per node: events/s, p50/p99 and CPU µs per event."""
    fresh = [_fresh_ids(scenario, tmp, f"{run_id}-n{i}") for i in range(len(nodes))]
    before = [node.cpu_seconds() for node in nodes]
    figures: list[dict[str, Any]] = [{} for _ in nodes]
    failures: list[BaseException] = []

    def drive(i: int) -> None:
        # A directory per node: wrk's spec file is written per run, and the runs are concurrent.
        own = tmp / f"wrk-n{i}"
        own.mkdir(exist_ok=True)
        try:
            figures[i] = wrk(nodes[i].url, fresh[i], own, seconds, f"{run_id}-n{i}", delay_ms=delay_ms)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    rows = []
    for i, (node, m) in enumerate(zip(nodes, figures, strict=True)):
        events = max(m["requests"] * scenario.events, 1)
        cpu_us = (node.cpu_seconds() - before[i]) * 1e6 / events
        rows.append({
            "node": i + 1,
            "events_per_s": round(m["rps"] * scenario.events),
            "p50_ms": m["p50"],
            "p99_ms": m["p99"],
            "non_2xx": m["non_2xx"],
            "cpu_us_per_event": round(cpu_us, 1),
        })  # fmt: skip
    return rows


def run(args: argparse.Namespace, chosen: list[Scenario], tmp: Path, run_id: str) -> int:
    # The tests' helpers start the servers: one way to run nats-server and make a database.
    from tests.pg_databases import fresh_database
    from tests.storage.nats_servers import NatsServers

    backend = args.backend
    report: dict[str, Any] = {"backend": backend, "seconds": args.seconds, "layouts": []}
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_database())
        cluster_env = {"TRACKYARD_STATE": dsn}
        if backend == "nats":
            # Three servers on this machine's cores: each Go runtime would run a thread a core
            # and the three contend; one each spent 15-25% less CPU a message (docs/performance.md).
            servers = NatsServers(tmp / "nats", 3, env={"GOMAXPROCS": str(args.nats_gomaxprocs)})
            stack.callback(servers.stop)
            servers.start()
            cluster_env["TRACKYARD_LOG"] = servers.url
        _add_source({}, tmp / "embedded")
        _add_source(cluster_env, tmp / "admin")
        layouts = [("embedded", 1, {}), (f"{backend} x1", 1, cluster_env), (f"{backend} x2", 2, cluster_env)]
        for label, count, env in layouts:
            data = [tmp / ("embedded" if not env else f"{label}-{i}".replace(" ", "")) for i in range(count)]
            nodes = [Process(_serve(d, args.workers), env) for d in data]
            try:
                for scenario in chosen:
                    console.print(f"[dim]{label}: {scenario.name} ({args.seconds} s)[/dim]")
                    rows = _measure(nodes, scenario, tmp, args.seconds, f"{run_id}-{label}".replace(" ", ""))
                    report["layouts"].append({"layout": label, "scenario": scenario.name, "nodes": rows})
                    if count == 1 and env and scenario.name == HALF_LOAD_SCENARIO:
                        rate = rows[0]["events_per_s"] / scenario.events / 2
                        delay_ms = scenario.connections * 1000 / max(rate, 1)
                        console.print(f"[dim]{label}: {scenario.name} at half rate[/dim]")
                        paced = _measure(nodes, scenario, tmp, args.seconds, f"{run_id}-paced", delay_ms)
                        report["half_load_batch_100"] = {"layout": label, **paced[0]}
            finally:
                for node in nodes:
                    node.stop()
    _print(report)
    out = BENCH / "results" / f"cluster-{backend}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written to {out.relative_to(REPO)}")
    return 0


def _print(report: dict[str, Any]) -> None:
    table = Table(
        title=f"collectors on {report['backend']} beside the embedded default ({report['seconds']} s each)"
    )
    for column in ("layout", "scenario", "node", "events/s", "p50 ms", "p99 ms", "non-2xx", "CPU µs/event"):
        table.add_column(column, justify="left" if column in ("layout", "scenario") else "right")
    for entry in report["layouts"]:
        for row in entry["nodes"]:
            table.add_row(
                entry["layout"], entry["scenario"], str(row["node"]), f"{row['events_per_s']:,}",
                f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", str(row["non_2xx"]),
                str(row["cpu_us_per_event"]),
            )  # fmt: skip
        if len(entry["nodes"]) > 1:
            total = sum(r["events_per_s"] for r in entry["nodes"])
            table.add_row(entry["layout"], entry["scenario"], "all", f"{total:,}", "", "", "", "")
    out_console.print(table)
    if half := report.get("half_load_batch_100"):
        out_console.print(
            f"batch of 100 at half load on {half['layout']}: p99 {half['p99_ms']:.1f} ms "
            f"(goal < 20 ms), {half['events_per_s']:,} events/s"
        )

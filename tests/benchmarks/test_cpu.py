"""``bench/cpu.py`` and ``bench/profile.py`` on real process trees: a real ``trackyard serve``
with two HTTP workers and its consumers, and Python processes that burn CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench import cpu
from bench.profile import FirstLoad, py_spy

from tests.conftest import Server, require, start_server

#: A process that burns CPU in a function of its own until the file named by argv[1] exists.
_BUSY = """
import os, sys
def burn_until_stopped():
    while not os.path.exists(sys.argv[1]):
        sum(i * i for i in range(10_000))
burn_until_stopped()
"""


def _wait_for(condition: Any, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def busy_tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A parent whose child burns CPU and calls itself the consumer ``busy`` on its command line."""
    stop = tmp_path / "stop"
    # The parent's own command line must not name the consumer module: it spells it out for
    # its child only.
    spawn = (
        "import subprocess, sys; "
        "subprocess.run([a.replace('CONSUMER', 'trackyard.consumers._child') for a in sys.argv[1:]])"
    )
    child = [sys.executable, "-c", _BUSY, str(stop), "CONSUMER", "busy"]
    parent = subprocess.Popen([sys.executable, "-c", spawn, *child])
    yield parent, stop
    stop.touch()
    parent.wait(timeout=30)


def test_a_grandchild_s_cpu_and_memory_are_counted_under_its_stage(
    busy_tree: tuple[subprocess.Popen[bytes], Path],
) -> None:
    parent, _ = busy_tree
    first = cpu.sample(parent.pid)
    _wait_for(lambda: cpu.sample(parent.pid).cpu_s.get("busy", 0.0) >= 0.3)
    now = cpu.sample(parent.pid)
    assert now.pids["ingest"] == [parent.pid]  # not a consumer: the stage of everything else
    assert len(now.pids["busy"]) == 1
    assert now.rss_kb["busy"] > 1000 and now.total_rss_kb > now.rss_kb["busy"]
    used = now.cpu_since(first)
    assert used["busy"] >= 0.3 - first.cpu_s.get("busy", 0.0)
    assert used["busy"] > used["ingest"]  # the parent only waits
    peak = cpu.PeakRss(parent.pid, interval=0.05)
    _wait_for(lambda: peak.total_kb > 0)
    peak.stop()
    assert peak.by_stage_kb["busy"] > 1000


#: Batches of 100 sent: enough work that each consumer's CPU time passes a clock tick (10 ms).
_BATCHES = 20


def test_serve_with_two_workers_is_split_into_ingest_and_each_consumer(tmp_path: Path) -> None:
    server: Server = start_server(tmp_path / "data", "--workers", "2")
    try:
        assert server.process is not None
        root = server.process.pid
        assert cpu.wait_until_idle(root)
        stages = cpu.sample(root)
        assert {"ingest", "profiles", "warehouse"} <= set(stages.pids)
        assert len(stages.pids["ingest"]) >= 3  # serve (the workers' supervisor) and two workers

        batch = {
            "batch": [
                {"type": "track", "event": "Viewed", "userId": f"u-{n}", "messageId": f"m-{n}"}
                for n in range(100)
            ]
        }

        def load() -> dict[str, Any]:
            with httpx.Client(base_url=server.url, auth=(server.write_key, "")) as client:
                codes = [
                    client.post("/v1/batch", json=_renumbered(batch, k)).status_code for k in range(_BATCHES)
                ]
            return {"requests": len(codes), "non_2xx": sum(code != 200 for code in codes)}

        figures, cost = cpu.measure(root, load, server.data_dir, catch_up_s=60)
        assert figures == {"requests": _BATCHES, "non_2xx": 0}
        assert cost.caught_up
        assert cost.applied["profiles"] == _BATCHES * 100 and cost.applied["warehouse"] == _BATCHES * 100
        assert set(cost.applied) == set(stages.pids) - {"ingest"}  # every consumer serve runs
        assert cost.ingest_cpu_s > 0
        assert cost.consumer_cpu_s["profiles"] > 0 and cost.consumer_cpu_s["warehouse"] > 0
        fields = cost.fields(requests=_BATCHES, events=_BATCHES * 100)
        assert fields["ingest_cpu_us_per_event"] == pytest.approx(
            cost.ingest_cpu_s * 1e6 / (_BATCHES * 100), abs=0.01
        )
        assert fields["consumer_cpu_us_per_event"]["profiles"] > 0
        assert fields["consumers_caught_up"] is True
    finally:
        server.stop()


def _renumbered(batch: dict[str, Any], k: int) -> dict[str, Any]:
    """The batch with message ids of its own (dedup would drop repeats)."""
    return {"batch": [{**event, "messageId": f"{event['messageId']}-{k}"} for event in batch["batch"]]}


def test_ratios_to_the_ceilings_of_the_same_run() -> None:
    row = {"server_cpu_us_per_request": 300.0, "ingest_cpu_us_per_event": 3.0}
    bare = {"server_cpu_us_per_request": 100.0, "ingest_cpu_us_per_event": 1.0}
    decode = {"server_cpu_us_per_request": 150.0, "ingest_cpu_us_per_event": 1.5}
    assert cpu.beside_ceilings(row, bare, decode) == {
        "decode_cpu_us_per_event": 1.5,
        "bare_cpu_us_per_request": 100.0,
        "ingest_cpu_vs_decode": 2.0,
        "cpu_vs_bare": 3.0,
    }
    assert cpu.beside_ceilings(row, None, None)["cpu_vs_bare"] is None


def test_profile_writes_a_flame_graph_of_each_process(
    busy_tree: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    spy = py_spy()
    require(spy is not None, "py-spy is not installed (requirements-dev.txt)")
    assert spy is not None
    parent, _ = busy_tree
    _wait_for(lambda: "busy" in cpu.sample(parent.pid).pids)
    profiler = FirstLoad(spy, tmp_path, "run")
    with profiler.around(parent.pid):
        _wait_for(lambda: cpu.sample(parent.pid).cpu_s["busy"] > 1.0)
    graphs = {path.name: path for path in profiler.files}
    assert "run-busy.svg" in graphs, profiler.problems
    assert "burn_until_stopped" in graphs["run-busy.svg"].read_text()
    graphs["run-busy.svg"].unlink()
    with profiler.around(parent.pid):  # only the first load is recorded
        pass
    assert not (tmp_path / "run-busy.svg").exists()

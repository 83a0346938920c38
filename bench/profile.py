"""``bench/run.py --profile``: a py-spy flame graph of each trackyard process during one scenario.

One ``py-spy record`` per process of the server's tree (``bench/cpu.py`` names its stage),
started before the load and stopped (SIGINT, on which py-spy writes its file) once the
consumers have caught up, so each consumer's graph covers the events of that load. Files:
``bench/results/<run>-<stage>.svg``, or ``<run>-<stage>-<process>.svg`` when a stage has several
processes (``--workers 2``: ``ingest-main``, uvicorn's supervisor, and ``ingest-worker1``...,
the HTTP workers; multiprocessing's resource tracker is left out). Idle samples are left out,
so a graph shows where CPU went. py-spy reads other processes' memory (ptrace): it needs
root or CAP_SYS_PTRACE.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.cpu import sample


def py_spy() -> str | None:
    """The py-spy executable (requirements-dev.txt installs it beside this Python)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _is_resource_tracker(pid: int) -> bool:
    """multiprocessing's resource tracker: idle, not a stage of trackyard's."""
    try:
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # ended: nothing to record


class Profiler:
    """Records every process below ``root`` from construction until :meth:`stop`."""

    def __init__(self, root: int, out_dir: Path, run: str, executable: str, rate: int = 100) -> None:
        self._recorders: list[tuple[Path, subprocess.Popen[bytes]]] = []
        for stage, pids in sample(root).pids.items():
            slug = re.sub(r"\W+", "-", stage)
            pids = [pid for pid in pids if not _is_resource_tracker(pid)]
            workers = [pid for pid in pids if pid != root]
            for pid in pids:
                if len(pids) == 1:
                    path = out_dir / f"{run}-{slug}.svg"
                elif pid == root:  # with --workers N: uvicorn's supervisor of the workers
                    path = out_dir / f"{run}-{slug}-main.svg"
                else:
                    path = out_dir / f"{run}-{slug}-worker{workers.index(pid) + 1}.svg"
                command = [executable, "record", "--pid", str(pid), "--rate", str(rate)]
                recorder = subprocess.Popen(
                    [*command, "--format", "flamegraph", "--output", str(path)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                self._recorders.append((path, recorder))

    def stop(self) -> tuple[list[Path], list[str]]:
        """Stop recording: the graphs written, and what py-spy said for those it could not write
        (a process with no CPU time in the window has no samples, hence no graph)."""
        for _, recorder in self._recorders:
            recorder.send_signal(signal.SIGINT)
        written, problems = [], []
        for path, recorder in self._recorders:
            try:
                _, err = recorder.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                _, err = recorder.communicate()
            if path.exists():
                written.append(path)
            else:
                problems.append(f"{path.name}: {err.decode(errors='replace').strip()[-300:]}")
        return written, problems


class FirstLoad:
    """``--profile``: records the first load it is put around (with the consumers' catch-up
    that follows it), and no other. Without an executable it records nothing."""

    def __init__(self, executable: str | None, out_dir: Path, run: str) -> None:
        self.files: list[Path] = []
        self.problems: list[str] = []
        self._executable = executable
        self._out_dir = out_dir
        self._run = run

    @contextlib.contextmanager
    def around(self, root: int, wanted: bool = True) -> Iterator[None]:
        if self._executable is None or not wanted:
            yield
            return
        recorder = Profiler(root, self._out_dir, self._run, self._executable)
        self._executable = None  # once
        try:
            yield
        finally:
            self.files, self.problems = recorder.stop()

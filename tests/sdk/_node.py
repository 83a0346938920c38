"""Running one of tests/js's Node scripts: it takes its config as JSON and prints JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import require

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")


def run_node_script(
    script: str, config: dict[str, Any], *, package: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Run ``tests/js/<script>`` with ``config``; return what it printed. ``package``: the npm
    package it needs, so a machine without scripts/install-test-deps skips rather than fails."""
    require(NODE is not None, "node is not installed")
    if package is not None:
        require(
            (JS_DIR / "node_modules" / package).is_dir(),
            "tests/js/node_modules missing: run scripts/install-test-deps",
        )
    proc = subprocess.run(
        [str(NODE), script, json.dumps(config)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    printed: dict[str, Any] = json.loads(proc.stdout)
    return printed

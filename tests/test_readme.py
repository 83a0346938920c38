"""The README's SDK snippets, run as written against a real server.

Each snippet is the fenced block under a ``<!-- snippet: NAME -->`` comment. Only the write
key (``WRITE_KEY``) and the host (``http://127.0.0.1:8088``) are replaced; the rest runs as a
user would paste it: Python snippets with this venv's interpreter, Node snippets as ES
modules under node in tests/js (where the pinned SDKs are installed), and browser snippets
bundled by esbuild in tests/js and run in headless Chromium, on another origin.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, require, start_server
from tests.sdk.conftest import browser, page_origin  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "tests" / "js"
NODE = shutil.which("node")
ESBUILD = JS_DIR / "node_modules" / ".bin" / "esbuild"
HOST = "http://127.0.0.1:8088"
_SNIPPET = re.compile(r"<!-- snippet: (\S+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
#: Every SDK the README shows, and the library name its events carry.
LIBRARIES = {
    "python-segment": "analytics-python",
    "python-rudderstack": "analytics-python",
    "node-segment": "@segment/analytics-node",
    "node-rudderstack": "analytics-node",
    "browser-segment": "analytics.js",
    "browser-rudderstack": "RudderLabs JavaScript SDK",
}
_MARKS = {"node": pytest.mark.node, "browser": pytest.mark.browser}


def snippets() -> list[tuple[str, str, str]]:
    """``(name, language, code)`` for each snippet, from the README as it is."""
    return _SNIPPET.findall((ROOT / "README.md").read_text())


def test_the_readme_shows_each_sdk_once() -> None:
    assert sorted(name for name, _, _ in snippets()) == sorted(LIBRARIES)


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("readme") / "data")
    yield srv
    srv.stop()


def run(args: list[str], code: str, cwd: Path) -> None:
    proc = subprocess.run(args, input=code, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr  # the snippets print their SDK's errors: none may come


def events_of(server: Server, library: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("context", {}).get("library", {}).get("name") == library]


def wait_for_one_more(
    server: Server, library: str, before: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll until an event of ``library`` beyond the first ``before`` is stored; return the new ones."""
    deadline = time.monotonic() + timeout
    while True:
        found = events_of(server, library)
        if len(found) > before or time.monotonic() > deadline:
            return found[before:]
        time.sleep(0.1)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=_MARKS.get(name.split("-")[0], ())) for name in sorted(LIBRARIES)],
)
def test_each_snippet_runs_as_written(
    name: str, readme_server: Server, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    (language, code) = next((lang, code) for n, lang, code in snippets() if n == name)
    server, library = readme_server, LIBRARIES[name]
    assert "WRITE_KEY" in code and HOST in code
    code = code.replace("WRITE_KEY", server.write_key).replace(HOST, server.url)
    before = len(events_of(server, library))
    if language == "python":
        run([sys.executable, "-"], code, ROOT)
        new = wait_for_one_more(server, library, before)
    elif name.startswith("node-"):
        require(NODE is not None, "node is not installed")
        require(ESBUILD.exists(), "tests/js/node_modules missing: run scripts/install-test-deps")
        # From stdin, an ES module resolves its imports from the working directory: tests/js.
        run([str(NODE), "--input-type=module", "-"], code, JS_DIR)
        new = wait_for_one_more(server, library, before)
    else:
        new = run_in_browser(code, request, tmp_path, lambda: wait_for_one_more(server, library, before))
    assert len(new) == 1, (name, new)
    (event,) = new
    assert event["type"] == "track" and event["event"] == "Signed Up"
    assert event["properties"] == {"plan": "pro"}
    if not name.startswith("browser-"):
        assert event["userId"] == "user-1"


def run_in_browser(code: str, request: pytest.FixtureRequest, tmp_path: Path, wait: Any) -> Any:
    """Bundle the snippet as a user's build would, run it in a page, and ``wait()`` while it sends."""
    require(ESBUILD.exists(), "tests/js/node_modules missing: run scripts/install-test-deps")
    chromium, origin = request.getfixturevalue("browser"), request.getfixturevalue("page_origin")
    bundle = tmp_path / "snippet.js"
    # From stdin, esbuild resolves imports from its working directory: tests/js.
    build = [str(ESBUILD), "--bundle", "--format=iife", "--platform=browser", "--target=es2020"]
    run([*build, f"--outfile={bundle}", "--log-level=warning"], code, JS_DIR)
    context = chromium.new_context()
    page = context.new_page()
    failed: list[str] = []
    console_errors: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{origin}/")
        page.add_script_tag(content=bundle.read_text())
        new = wait()
    finally:
        context.close()
    assert failed == [] and console_errors == [], (failed, console_errors)
    return new

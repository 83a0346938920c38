"""Fixtures for the SDK tests: headless Chromium (Debian's) and a second origin for test pages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUNDLE = Path(__file__).resolve().parents[1] / "js" / "dist" / "analytics-bundle.js"
PAGE_HTML = b"""<!doctype html><html><head><title>trackyard browser SDK test</title>
<link rel="icon" href="data:,"><script src="/analytics-bundle.js"></script>
</head><body>trackyard</body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(CHROMIUM.exists(), f"{CHROMIUM} missing: run scripts/install-test-deps")
    require(BUNDLE.exists(), f"{BUNDLE} missing: run scripts/install-test-deps")
    from playwright.sync_api import sync_playwright

    # Debian's chromium, never a Playwright-downloaded one (no network here).
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """A second origin that serves only the test page and the bundle."""
    bundle = BUNDLE.read_bytes() if BUNDLE.exists() else b""

    class PageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files = {"/": (PAGE_HTML, "text/html"), "/analytics-bundle.js": (bundle, "text/javascript")}
            found = files.get(self.path.split("?")[0])
            body, ctype = found or (b"not found", "text/plain")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    # "localhost" vs the server's "127.0.0.1" (and another port): a different origin.
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()

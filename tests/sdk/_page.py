"""A browser page in a fresh context whose requests, responses and console errors are recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Server


@dataclass
class Traffic:
    """What a page did, for the assertions and for failure messages."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: (method, url, status, headers) of every response.
    responses: list[tuple[str, str, int, dict[str, str]]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def stray(self, *origins: str) -> list[str]:
        """The requests to anywhere but ``origins`` (and data: URLs)."""
        allowed = (*(origin + "/" for origin in origins), "data:")
        return [url for url in self.requests if not url.startswith(allowed)]

    def settle(self, page: Any, origin: str, timeout: float = 10.0) -> None:
        """Let the page take in the answers to its requests to ``origin``: the server stores
        events before it answers, so they can be readable before the page has its responses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            asked = sum(url.startswith(origin) for url in self.requests)
            answered = sum(r[1].startswith(origin) for r in self.responses)
            if answered + sum(f.split(" ", 2)[1].startswith(origin) for f in self.failed) >= asked:
                return
            page.wait_for_timeout(20)  # pumps Playwright's events, unlike time.sleep

    def __str__(self) -> str:
        return f"requests: {self.requests}; failed: {self.failed}; console errors: {self.console_errors}"


@contextmanager
def watched_page(browser: Any) -> Iterator[tuple[Any, Traffic]]:
    """A page in a fresh context (fresh cookies and localStorage), closed on the way out."""
    context = browser.new_context()
    page = context.new_page()
    traffic = Traffic()
    page.on("request", lambda r: traffic.requests.append(r.url))
    page.on("requestfailed", lambda r: traffic.failed.append(f"{r.method} {r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: traffic.responses.append((r.request.method, r.url, r.status, r.all_headers())),
    )
    page.on("console", lambda m: traffic.console_errors.append(m.text) if m.type == "error" else None)
    try:
        yield page, traffic
    finally:
        context.close()


def wait_for_events(server: Server, count: int, traffic: Traffic) -> list[dict[str, Any]]:
    """The server's events once it holds ``count``; if it never does, fail with what the page saw
    (usually the real cause)."""
    try:
        return server.wait_for_events(count)
    except Exception as exc:
        raise AssertionError(f"events not stored; {traffic}") from exc

"""The console in real headless Chromium (Debian's, through Playwright), against a real server.

Events come from the real Python SDK (segment-analytics-python); a source created in the
console has its curl snippet run in bash; a webhook receiver that refuses, then accepts,
gives the destinations page dead letters to show and replay. Each page is screenshotted
into tests/artifacts/console/ (docs/console.md shows copies of them).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from tests.conftest import Server, cli
from tests.console.conftest import TOKEN
from tests.sdk._page import watched_page
from tests.sdk.conftest import browser  # noqa: F401 (fixture)
from trackyard.ingest.auth_failures import fingerprint
from trackyard.snippets import README_SNIPPETS

pytestmark = pytest.mark.browser

_BULK: dict[str, str] = {}
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"


class Receiver:
    """A webhook receiver that answers ``status`` and keeps what it was sent."""

    def __init__(self) -> None:
        self.status = 422
        self.bodies: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.httpd.shutdown()
    found.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("console-browser") / "data"
    # No warehouse loader: the flood's 2,500 event names would be 2,500 tables to create before
    # the server could stop (the console reads only the log).
    srv = Server(data, "--admin-token", TOKEN, "--no-warehouse")
    srv.write_key = cli("sources", "add", "web", "--data-dir", str(data)).strip()
    # The flood comes from a source of its own, which the destination leaves out.
    _BULK["key"] = cli("sources", "add", "bulk", "--data-dir", str(data)).strip()
    hooks = ["hooks", "--format", "webhook", "--url", receiver.url, "--source", "web", "--source", "shop"]
    cli("destinations", "add", *hooks, "--data-dir", str(data))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[Any]:  # noqa: F811 (the fixture above)
    with watched_page(browser) as (found, traffic):
        found.set_default_timeout(10_000)
        yield found
        # Everything from the server itself (works offline), and no CSP or script errors.
        assert not traffic.stray(server.url), traffic
        # (The one 401 is the sign-in page's answer to a wrong token, which the test sends.)
        unexpected = [e for e in traffic.console_errors if "status of 401" not in e]
        assert not unexpected, traffic


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def reload_until(page: Any, text: str, timeout: float = 20.0) -> None:
    """Reload until ``text`` shows (what a consumer builds arrives in its own time)."""
    deadline = time.monotonic() + timeout
    while text not in page.content():
        assert time.monotonic() < deadline, f"{text!r} never showed on {page.url}"
        page.wait_for_timeout(200)  # pumps Playwright's events between reloads
        page.reload()


def test_sign_in_then_watch_filter_and_open_events(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/console/live")
    assert "/console/sign-in" in page.url  # no cookie yet
    shot(page, "sign-in")
    page.get_by_label("Admin token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That is not the admin token."
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/live")
    page.get_by_text("Live:").wait_for()

    client = Client(server.write_key, host=server.url)
    client.identify("user-1", {"email": "ann@example.com", "plan": "pro"})
    client.track("user-1", "Order Completed", {"revenue": 42.5})
    client.group("user-1", "acme", {"name": "Acme Inc"})
    client.page("user-1", "Docs", "Install", {"path": "/install"})
    client.shutdown()
    rows = page.locator("#events li")
    order = rows.filter(has_text="Order Completed")
    order.wait_for()
    # Newest first: the page call came last.
    assert "Install" in rows.nth(0).inner_text()

    # A batch item carrying another source's key is refused alone, and shows beside the events.
    answer = httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": [{"type": "track", "userId": "user-1", "event": "Sneaky", "writeKey": "not-ours"}]},
        auth=(server.write_key, ""),
    )
    assert answer.json()["rejected"][0]["code"] == "write_key_mismatch"
    reject = page.locator("#events li.reject", has_text="write_key_mismatch")
    reject.wait_for()
    # A wrong write key: refused with 401, and its refusal shows too, of no source, without the key.
    wrong_key = "wrong-key-for-the-debugger"
    unauthorized = httpx.post(
        f"{server.url}/v1/track", json={"userId": "user-1", "event": "Lost"}, auth=(wrong_key, "")
    )
    assert unauthorized.status_code == 401
    bad_key = page.locator("#events li.reject", has_text="invalid_write_key")
    bad_key.wait_for()
    assert "no source: wrong key" in bad_key.inner_text()
    shot(page, "live")

    # Keyboard: the first Tab reaches the skip link; an event opens with Enter.
    page.locator("body").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    order.get_by_role("button").focus()
    page.keyboard.press("Enter")
    detail = page.locator("#detail")
    detail.wait_for()
    assert 'analytics.track("Order Completed"' in detail.inner_text()
    assert "/v1/batch" in detail.inner_text() and "segment" in detail.inner_text()
    assert "analytics-python" in detail.inner_text()
    shot(page, "event")
    page.get_by_role("button", name="Raw").click()
    raw = json.loads(page.locator("#raw").inner_text())
    assert raw["event"] == "Order Completed" and raw["properties"] == {"revenue": 42.5}
    reject.get_by_role("button").click()
    refused = json.loads(page.locator("#raw").inner_text())  # the refused item, key redacted
    assert refused["event"] == "Sneaky" and refused["writeKey"] == "[redacted]"
    bad_key.get_by_role("button").click()
    kept = json.loads(page.locator("#raw").inner_text())  # the key's fingerprint, never the key
    assert kept == {"key": fingerprint(wrong_key), "client_ip": "127.0.0.1"}
    assert wrong_key not in page.content()

    page.get_by_label("Event name").fill("order")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**event=order**")
    page.locator("#events li.event").first.wait_for()
    assert all("Order Completed" in text for text in page.locator("#events li.event").all_inner_texts())

    page.get_by_role("button", name="Pause").click()
    assert page.get_by_role("status").inner_text().startswith("Paused")
    client = Client(server.write_key, host=server.url)
    client.track("user-1", "Order Refunded")
    client.shutdown()
    page.get_by_role("button", name="Resume").click()
    # It was sent while paused: resuming goes on after the last event shown, so it shows now.
    page.locator("#events li.event", has_text="Order Refunded").wait_for()

    # A flood is sampled, and the page says so.
    page.goto(f"{server.url}/console/live")
    page.get_by_text("Live:").wait_for()
    flood = [{"type": "track", "userId": "flood", "event": f"Flood {i}"} for i in range(2_500)]
    assert httpx.post(f"{server.url}/v1/batch", json={"batch": flood}, auth=(_BULK["key"], "")).is_success
    page.get_by_text("Live, sampling:").wait_for()
    assert page.locator("#events li", has_text="Flood 2499").count() == 1  # the newest are shown
    assert page.locator("#events li", has_text="Flood 0").count() == 0
    shot(page, "live-sampling")


def test_create_a_source_and_its_curl_snippet_works(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/console/sources")
    page.get_by_label("Name").fill("shop")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name="Source shop").wait_for()
    page.wait_for_url("**/console/sources/shop")  # htmx swapped the page in and set the address
    assert page.get_by_role("status").inner_text() == "Created."
    titles = [snippet.title for snippet in README_SNIPPETS]
    assert page.locator("section.snippet h3").all_inner_texts() == ["curl, from a shell", *titles]
    shot(page, "source")
    curl = page.locator("#code-curl").inner_text()
    key = page.locator("#write-key").inner_text()
    assert key in curl and server.url in curl
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0 and json.loads(ran.stdout) == {"success": True}, ran
    (event,) = server.wait_for_events(1, source="shop")
    assert event["event"] == "Signed Up" and event["source"]["name"] == "shop"

    page.get_by_role("button", name="Rotate the write key").click()
    page.get_by_text("Rotated").wait_for()
    assert page.locator("#write-key").inner_text() != key
    assert page.url.endswith("/console/sources/shop")
    again = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    assert json.loads(again.stdout)["code"] == "invalid_write_key"  # the old key no longer works
    page.get_by_role("button", name="Disable").click()
    page.get_by_text("Disabled.").wait_for()
    page.get_by_label("Rate limit (events/s, empty for none)").fill("25")
    page.get_by_role("button", name="Set").click()
    page.get_by_text("25 events/s").wait_for()
    page.goto(f"{server.url}/console/sources")
    assert "disabled" in page.locator("tr", has_text="shop").inner_text()
    shot(page, "sources")


def test_destinations_dead_letters_and_replay(page: Any, server: Server, receiver: Receiver) -> None:
    page.goto(f"{server.url}/console/destinations")
    # The receiver's 422s are permanent: the events go to the dead letters at once.
    reload_until(page, "HTTP 422:  (permanent; 1 attempts")
    page.get_by_role("heading", name="hooks").wait_for()
    # The requests by status class, from the registry the destination's process writes.
    assert "4xx: " in page.locator("#destinations").inner_text()
    shot(page, "destinations")
    receiver.status = 200
    page.get_by_role("button", name="Replay the dead letters").click()
    notice = page.get_by_role("status").inner_text()
    assert notice.startswith("replayed to hooks:") and " 0 dead-lettered" in notice, notice
    assert receiver.bodies


def test_profiles_page(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/console/profiles")
    page.get_by_label("Any id of the person").fill("user-1")
    page.get_by_role("button", name="Look up").click()
    reload_until(page, "Acme Inc")  # once the profiles consumer has read the group call
    assert "ann@example.com" in page.content() and "Order Completed" in page.content()
    shot(page, "profiles")


def test_sign_out_then_pages_and_data_are_refused(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/console/live")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sign-in")
    page.goto(f"{server.url}/console/sources")
    assert "/console/sign-in?next=/console/sources" in page.url
    assert page.request.get(f"{server.url}/console/live/stream").status == 401

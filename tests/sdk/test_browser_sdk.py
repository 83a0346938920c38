"""The official browser SDK (@segment/analytics-next, pinned in tests/js) in headless Chromium.

The page comes from its own origin (http://localhost:<other port>), the server is
http://127.0.0.1:<port>, so every request the SDK makes to trackyard is cross-origin and CORS is
really exercised (preflights included: analytics-next >=1.84 sends Authorization). The SDK loads
its settings from trackyard (cdnURL) and must fetch nothing else: the bundle inlines every chunk.
Dependencies: scripts/install-test-deps (Debian chromium, npm ci, npm run build).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.sdk._page import wait_for_events, watched_page

pytestmark = pytest.mark.browser


TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Runs in the page: load the SDK against trackyard, make one call of each kind in order (awaiting
# each, as the identity an event carries is read while it is processed), and return the events as
# the SDK built them. In batching mode a call resolves once queued, not once sent.
DRIVE_SDK = """async ({ serverUrl, writeKey, deliveryStrategy, runId }) => {
  const drive = async () => {
    const [analytics] = await window.AnalyticsBrowser.load(
      { writeKey, cdnURL: serverUrl },
      { integrations: { 'Segment.io': { protocol: 'http', deliveryStrategy } } },
    )
    const user = `web-user-${runId}`
    const calls = [
      () => analytics.track('Signup Started', { plan: 'free', nested: { deep: true } }),
      // Alias before identify, the usual flow: the SDK fills previousId with the anonymousId.
      // (After identify, analytics-next overwrites an alias's userId with the identified user.)
      () => analytics.alias(user),
      () => analytics.identify(user, { email: 'grace@example.com', logins: 3 }),
      () => analytics.track('Order Completed', {
        order_id: `o-${runId}`, revenue: 42.5, items: [{ sku: 'a1' }],
      }),
      () => analytics.page('Docs', 'Install', { section: 'setup' }),
      () => analytics.screen('Settings', { tab: 'privacy' }),
      () => analytics.group(`g-${runId}`, { name: 'Acme', employees: 12 }),
    ]
    const sent = []
    for (const call of calls) sent.push(JSON.parse(JSON.stringify((await call()).event)))
    return sent
  }
  // Bounded: a server that never answers the settings fetch must fail the test, not hang it.
  const hung = new Promise((_, reject) => {
    setTimeout(() => reject(new Error('SDK run took over 20 s')), 20000)
  })
  return Promise.race([hung, drive()])
}"""


def drive(browser: Any, page_origin: str, server: Any, strategy: dict[str, Any]) -> dict[str, Any]:
    """Run DRIVE_SDK in a fresh context (fresh cookies/localStorage); wait for trackyard to store it."""
    with watched_page(browser) as (page, traffic):
        before = len(server.events())
        page.goto(f"{page_origin}/?utm_source=trackyard-test")
        run_id = uuid.uuid4().hex[:10]
        sent: list[dict[str, Any]] = page.evaluate(
            DRIVE_SDK,
            {
                "serverUrl": server.url,
                "writeKey": server.write_key,
                "deliveryStrategy": strategy,
                "runId": run_id,
            },
        )
        events = wait_for_events(server, before + len(sent), traffic)
        traffic.settle(page, server.url)
    ids = {e["messageId"] for e in sent}
    stored = {e["messageId"]: e for e in events if e["messageId"] in ids}
    assert set(stored) == ids, f"missing messageIds: {ids - set(stored)}"
    # The page may only talk to its own origin and trackyard: nothing from a CDN.
    stray = traffic.stray(page_origin, server.url)
    assert stray == [], f"requests outside the two test origins: {stray}"
    assert traffic.failed == [], f"failed requests (CORS?): {traffic.failed}"
    assert traffic.console_errors == []
    responses = traffic.responses
    return {"run_id": run_id, "sent": sent, "stored": stored, "responses": responses, "origin": page_origin}


def check_events(run: dict[str, Any], route_of: dict[str, str]) -> None:
    """Stored events equal what the SDK built, plus what trackyard adds; route_of: type -> route."""
    sent, stored, run_id = run["sent"], run["stored"], run["run_id"]
    anon = sent[0]["anonymousId"]
    assert anon, "the SDK always sets an anonymousId"
    for s in sent:
        e = stored[s["messageId"]]
        assert s["messageId"].startswith("ajs-next-")
        assert e["type"] == s["type"]
        assert e["anonymousId"] == anon
        for key in ("userId", "event", "name", "properties", "traits", "groupId", "previousId"):
            if key in s and not (key == "traits" and s["type"] == "track"):  # track's traits aren't sent
                assert e[key] == s[key], (s["type"], key)
        for key, value in s["context"].items():  # page, userAgent, locale, library, campaign...
            assert e["context"][key] == value, (s["type"], "context", key)
        assert e["context"]["library"]["name"] == "analytics.js"
        assert e["context"]["ip"], "trackyard fills context.ip for browser events"
        assert e["context"]["page"]["url"].startswith(run["origin"])
        assert e["context"]["campaign"] == {"source": "trackyard-test"}
        assert "writeKey" not in e
        assert e["receivedAt"] and e["sentAt"] and e["originalTimestamp"]
        assert e["source"]["format"] == "segment"
        assert e["source"]["route"] == route_of[e["type"]]

    # Literal spot checks, so a bug shared by sender and checker can't hide.
    user = f"web-user-{run_id}"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in stored.values():
        by_type.setdefault(e["type"], []).append(e)
    assert sorted(by_type) == sorted(TYPES)
    signup, order = sorted(by_type["track"], key=lambda e: e["event"] != "Signup Started")
    assert signup["event"] == "Signup Started" and not signup.get("userId")
    assert signup["properties"] == {"plan": "free", "nested": {"deep": True}}
    assert order["userId"] == user
    assert order["properties"] == {"order_id": f"o-{run_id}", "revenue": 42.5, "items": [{"sku": "a1"}]}
    (identify,) = by_type["identify"]
    assert identify["userId"] == user
    assert identify["traits"] == {"email": "grace@example.com", "logins": 3}
    (page,) = by_type["page"]
    assert page["name"] == "Install" and page["properties"]["section"] == "setup"
    assert page["properties"]["category"] == "Docs"
    (screen,) = by_type["screen"]
    assert screen["name"] == "Settings" and screen["properties"]["tab"] == "privacy"
    (group,) = by_type["group"]
    assert group["groupId"] == f"g-{run_id}" and group["traits"] == {"name": "Acme", "employees": 12}
    (alias,) = by_type["alias"]
    assert alias["userId"] == user and alias["previousId"] == anon


def event_posts(run: dict[str, Any], server: Any) -> list[tuple[str, str, int, dict[str, str]]]:
    """The POSTs that carried events (not the SDK's own metrics to /v1/m, should any be sent)."""
    return [r for r in run["responses"] if r[0] == "POST" and r[1] != f"{server.url}/v1/m"]


def test_browser_standard_delivery(browser: Any, page_origin: str, server: Any) -> None:
    run = drive(browser, page_origin, server, {"strategy": "standard"})
    check_events(run, {t: f"/v1/{t[0]}" for t in TYPES})
    # One POST per event to the short routes, each readable cross-origin.
    posts = event_posts(run, server)
    assert sorted(url.removeprefix(server.url) for _, url, _, _ in posts) == [
        "/v1/a",
        "/v1/g",
        "/v1/i",
        "/v1/p",
        "/v1/s",
        "/v1/t",
        "/v1/t",
    ]
    for _, url, status, headers in posts:
        assert status == 200, url
        assert headers.get("access-control-allow-origin") in (page_origin, "*"), (url, headers)


def test_browser_batching_delivery(browser: Any, page_origin: str, server: Any) -> None:
    # size 7 = the number of calls, so exactly one batch; the timeout only guards against a hang.
    strategy = {"strategy": "batching", "config": {"size": 7, "timeout": 2000}}
    run = drive(browser, page_origin, server, strategy)
    check_events(run, {t: "/v1/b" for t in TYPES})
    posts = event_posts(run, server)
    assert [(url.removeprefix(server.url), status) for _, url, status, _ in posts] == [("/v1/b", 200)]
    assert posts[0][3].get("access-control-allow-origin") in (page_origin, "*")
    # One request, so one receivedAt for all of its events.
    assert len({e["receivedAt"] for e in run["stored"].values()}) == 1

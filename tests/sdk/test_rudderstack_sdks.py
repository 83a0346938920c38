"""RudderStack's own JS SDKs, unmodified, against a real trackyard.

Both send the time a call happened only as ``originalTimestamp``, never ``timestamp``;
trackyard keeps it as the event's time, skew-corrected as RudderStack's server does
(``timestamp = receivedAt - (sentAt - originalTimestamp)``). Each test backdates one call
an hour and checks the stored event still says it happened an hour ago.

- ``@rudderstack/rudder-sdk-node`` (tests/js/rudder_node_send.mjs): gzip, Basic auth, /v1/batch.
- ``@rudderstack/analytics-js`` in headless Chromium, from another origin: it loads its
  source config from trackyard (``GET /sourceConfig/``, the control plane's route), then
  sends each call to ``/v1/{type}``; both cross-origin, preflighted.

Dependencies: scripts/install-test-deps.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Server
from tests.sdk._node import run_node_script
from tests.sdk._page import wait_for_events, watched_page

TYPES = {"identify", "track", "page", "screen", "group", "alias"}


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def check_times(event: dict[str, Any]) -> None:
    """The stored time is the client's, corrected for the skew between its clock and ours."""
    assert "originalTimestamp" in event, event
    skew = instant(event["sentAt"]) - instant(event["originalTimestamp"])
    assert instant(event["timestamp"]) == instant(event["receivedAt"]) - skew


def check_backdated(event: dict[str, Any], backdated: str) -> None:
    check_times(event)
    assert instant(event["originalTimestamp"]) == instant(backdated)
    # The SDK and the server share a clock here: the correction is at most the sending delay.
    assert abs(instant(event["timestamp"]) - instant(backdated)) < timedelta(seconds=10)
    assert instant(event["receivedAt"]) - instant(event["timestamp"]) > timedelta(minutes=59)


@pytest.mark.node
def test_rudder_sdk_node_keeps_the_event_time(server: Server) -> None:
    config = {"host": server.url, "writeKey": server.write_key, "runId": uuid.uuid4().hex[:10]}
    summary = run_node_script("rudder_node_send.mjs", config, package="@rudderstack/rudder-sdk-node")
    events = server.wait_for_events(7)
    assert len(events) == 7
    assert {e["type"] for e in events} == TYPES
    for event in events:
        check_times(event)
        assert event["context"]["library"]["name"] == "analytics-node"
        assert event["channel"] == "server"
        assert event["source"]["route"] == "/v1/batch"
    (backdated,) = [e for e in events if e.get("event") == "Backdated"]
    assert backdated["anonymousId"] == summary["anonymousId"]
    check_backdated(backdated, summary["backdated"])
    order = next(e for e in events if e.get("event") == "Order Completed")
    assert order["userId"] == summary["userId"]
    assert order["properties"] == {"order_id": f"o-{summary['runId']}", "revenue": 42.5}
    # Not backdated: it happened moments before it was received.
    assert instant(order["receivedAt"]) - instant(order["timestamp"]) < timedelta(seconds=10)


# Runs in the page: load the SDK with trackyard as both its control plane (configUrl) and its
# data plane, make one call of each kind (one backdated an hour), and return the events as the
# SDK built them. A call's callback runs once the event is queued, not once it is sent.
DRIVE_RUDDER = """async ({ serverUrl, writeKey, runId }) => {
  const backdated = new Date(Date.now() - 3600 * 1000).toISOString()
  const drive = () => new Promise((resolve) => {
    const analytics = new window.RudderAnalytics()
    analytics.load(writeKey, serverUrl, { configUrl: serverUrl, logLevel: 'ERROR' })
    analytics.ready(async () => {
      const user = `rs-web-user-${runId}`
      const one = (call) => new Promise((done) => call(done))
      const sent = []
      const options = { originalTimestamp: backdated }
      sent.push(await one((cb) => analytics.track('Backdated', { n: 1 }, options, cb)))
      sent.push(await one((cb) => analytics.identify(user, { email: 'grace@example.com' }, cb)))
      sent.push(await one((cb) => analytics.track('Order Completed', { order_id: `o-${runId}` }, cb)))
      sent.push(await one((cb) => analytics.page('Docs', 'Install', { section: 'setup' }, cb)))
      sent.push(await one((cb) => analytics.group(`g-${runId}`, { name: 'Acme' }, cb)))
      sent.push(await one((cb) => analytics.alias(`rs-web-alias-${runId}`, cb)))
      resolve({ backdated, sent: JSON.parse(JSON.stringify(sent)) })
    })
  })
  // Bounded: a server that never answers the config fetch must fail the test, not hang it.
  const hung = new Promise((_, reject) => {
    setTimeout(() => reject(new Error('SDK run took over 20 s')), 20000)
  })
  return Promise.race([hung, drive()])
}"""


@pytest.mark.browser
def test_rudderstack_browser_sdk_loads_its_config_from_trackyard_and_keeps_the_event_time(
    browser: Any, page_origin: str, server: Server
) -> None:
    with watched_page(browser) as (page, traffic):
        page.goto(f"{page_origin}/")
        run_id = uuid.uuid4().hex[:10]
        run = page.evaluate(
            DRIVE_RUDDER, {"serverUrl": server.url, "writeKey": server.write_key, "runId": run_id}
        )
        sent = run["sent"]
        events = wait_for_events(server, len(sent), traffic)
        traffic.settle(page, server.url)
    seen = str(traffic)
    responses = traffic.responses
    assert len(events) == len(sent), seen
    # The config came from trackyard, readable cross-origin, and nothing came from a CDN.
    configs = [r for r in responses if r[0] == "GET" and "/sourceConfig/" in r[1]]
    assert [r[2] for r in configs] == [200], seen
    assert configs[0][1].startswith(f"{server.url}/sourceConfig/?")
    assert configs[0][3]["access-control-allow-origin"] == page_origin
    assert traffic.stray(page_origin, server.url) == [], seen
    assert traffic.failed == [] and traffic.console_errors == [], seen
    posts = [r for r in responses if r[0] == "POST"]
    assert sorted(url.removeprefix(server.url) for _, url, _, _ in posts) == [
        "/v1/alias",
        "/v1/group",
        "/v1/identify",
        "/v1/page",
        "/v1/track",
        "/v1/track",
    ]
    assert all(status == 200 and h["access-control-allow-origin"] == page_origin for _, _, status, h in posts)

    stored = {e["messageId"]: e for e in events}
    assert set(stored) == {s["messageId"] for s in sent}
    for s in sent:
        event = stored[s["messageId"]]
        assert "timestamp" not in s, "the SDK sends the time only as originalTimestamp"
        assert event["type"] == s["type"]
        assert event["originalTimestamp"] == s["originalTimestamp"]
        check_times(event)
        assert event["context"]["library"]["name"] == "RudderLabs JavaScript SDK"
        assert event["channel"] == "web"
    backdated = stored[sent[0]["messageId"]]
    assert backdated["event"] == "Backdated" and backdated["properties"] == {"n": 1}
    check_backdated(backdated, run["backdated"])
    identify = stored[sent[1]["messageId"]]
    assert identify["userId"] == f"rs-web-user-{run_id}"
    assert identify["context"]["traits"]["email"] == "grace@example.com"

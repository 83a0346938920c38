"""What to paste to send a first event with a write key: curl and the SDKs' settings.

The first ``trackyard serve`` prints these, and ``trackyard sources show NAME`` prints them
again at any time, so a key is never lost in a scrolled-away terminal.
"""

from __future__ import annotations


def curl(url: str, write_key: str) -> str:
    return (
        f"curl -u '{write_key}:' -H 'Content-Type: application/json' {url}/v1/track \\\n"
        """  -d '{"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}}'"""
    )


def sdks(url: str, write_key: str) -> str:
    """One short, whole example per SDK family (README's table lists every tested one)."""
    # Over plain http the browser SDK must be told so; over https it needs nothing more.
    plain_http = url.startswith("http:")
    browser_options = ', { integrations: { "Segment.io": { protocol: "http" } } }' if plain_http else ""
    return f"""\
Python (pip install segment-analytics-python):

    from segment.analytics import Client
    client = Client("{write_key}", host="{url}")
    client.track(user_id="user-1", event="Signed Up")
    client.shutdown()

Node.js (npm install @segment/analytics-node):

    import {{ Analytics }} from "@segment/analytics-node"
    const analytics = new Analytics({{ writeKey: "{write_key}", host: "{url}" }})
    analytics.track({{ userId: "user-1", event: "Signed Up" }})
    await analytics.closeAndFlush()

Browser (npm install @segment/analytics-next):

    import {{ AnalyticsBrowser }} from "@segment/analytics-next"
    const analytics = AnalyticsBrowser.load({{ writeKey: "{write_key}", cdnURL: "{url}" }}{browser_options})
    analytics.track("Signed Up")"""

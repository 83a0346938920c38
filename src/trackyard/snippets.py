"""What to paste to send a first event with a write key: curl and the SDKs' settings.

The first ``trackyard serve`` prints these, and ``trackyard sources show NAME`` prints them
again at any time, so a key is never lost in a scrolled-away terminal. The console's
sources page shows every client the README lists (:data:`README_SNIPPETS`).
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class Snippet:
    """One client's whole example, as the README shows it (``README.md``, ``<!-- snippet: NAME -->``)."""

    name: str
    title: str
    install: str
    language: str
    code: str

    def filled(self, url: str, write_key: str) -> Snippet:
        code = self.code.replace(README_HOST, url).replace(README_KEY, write_key)
        if not url.startswith("http:"):  # behind https the browser SDK needs no protocol option
            code = "\n".join(line for line in code.split("\n") if "protocol: 'http'" not in line)
            code = code.replace(f"  {_PLAIN_HTTP_NOTE}\n", "")
        return Snippet(self.name, self.title, self.install, self.language, code)


#: What the README's snippets say where a real server's values go.
README_HOST = "http://127.0.0.1:8088"
README_KEY = "WRITE_KEY"
_PLAIN_HTTP_NOTE = "// Only for a server on plain http, as here; leave it out behind https."

_PYTHON_CALLS = """
client = Client("WRITE_KEY", host="http://127.0.0.1:8088")
client.track("user-1", "Signed Up", {"plan": "pro"})
client.shutdown()  # sends what is still queued, then stops the sending thread"""

#: Every client the README lists, in its order; ``tests/console/test_snippets.py`` checks that
#: these are the README's blocks exactly, and ``tests/test_readme.py`` runs those.
README_SNIPPETS: tuple[Snippet, ...] = (
    Snippet(
        "python-segment",
        "Python (Segment)",
        "pip install segment-analytics-python",
        "python",
        "from segment.analytics import Client\n" + _PYTHON_CALLS,
    ),
    Snippet(
        "python-rudderstack",
        "Python (RudderStack)",
        "pip install rudder-sdk-python",
        "python",
        "from rudderstack.analytics import Client\n" + _PYTHON_CALLS,
    ),
    Snippet(
        "node-segment",
        "Node.js (Segment), as an ES module",
        "npm install @segment/analytics-node",
        "js",
        """\
import { Analytics } from '@segment/analytics-node'

const analytics = new Analytics({ writeKey: 'WRITE_KEY', host: 'http://127.0.0.1:8088' })
analytics.on('error', (err) => console.error(err))
analytics.track({ userId: 'user-1', event: 'Signed Up', properties: { plan: 'pro' } })
await analytics.closeAndFlush() // sends what is still queued before the program exits""",
    ),
    Snippet(
        "node-rudderstack",
        "Node.js (RudderStack)",
        "npm install @rudderstack/rudder-sdk-node",
        "js",
        """\
import Analytics from '@rudderstack/rudder-sdk-node'

const client = new Analytics('WRITE_KEY', {
  dataPlaneUrl: 'http://127.0.0.1:8088',
  // Without an errorHandler, a refused flush (a wrong key's 401) is an unhandled rejection.
  errorHandler: (err) => console.error(err),
})
client.track({ userId: 'user-1', event: 'Signed Up', properties: { plan: 'pro' } })
await client.flush() // sends what is still queued before the program exits""",
    ),
    Snippet(
        "browser-segment",
        "Browser (Segment analytics-next), in your bundle",
        "npm install @segment/analytics-next",
        "js",
        """\
import { AnalyticsBrowser } from '@segment/analytics-next'

const analytics = AnalyticsBrowser.load(
  { writeKey: 'WRITE_KEY', cdnURL: 'http://127.0.0.1:8088' },
  // Only for a server on plain http, as here; leave it out behind https.
  { integrations: { 'Segment.io': { protocol: 'http' } } },
)
analytics.track('Signed Up', { plan: 'pro' })""",
    ),
    Snippet(
        "browser-rudderstack",
        "Browser (RudderStack analytics-js), in your bundle",
        "npm install @rudderstack/analytics-js",
        "js",
        """\
import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'

const analytics = new RudderAnalytics()
analytics.load('WRITE_KEY', 'http://127.0.0.1:8088', { configUrl: 'http://127.0.0.1:8088' })
analytics.track('Signed Up', { plan: 'pro' })""",
    ),
)


def every_client(url: str, write_key: str) -> list[Snippet]:
    """curl and every README client, with ``url`` and ``write_key`` filled in."""
    shell = Snippet("curl", "curl, from a shell", "", "shell", curl(url, write_key))
    return [shell, *(snippet.filled(url, write_key) for snippet in README_SNIPPETS)]

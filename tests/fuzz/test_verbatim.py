"""Strings that look like SQL, HTML or path traversal are data: stored and returned verbatim,
through every format, and the store is unharmed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, cli, start_server

ADMIN = "fuzz-admin-token"

_NASTY = [
    "'; DROP TABLE events; --",
    "1' OR '1'='1",
    'x"); DELETE FROM sources; --',
    "Robert'); DROP TABLE dedup_0;--",
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>",
    "&lt;b&gt; &amp; </textarea>",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/dev/null\x00.json",
    "${jndi:ldap://example.invalid/a}",
    "{{7*7}}",
    "\u202eevil\u200b\ufeff",
    "null",
]
nasty = st.one_of(st.sampled_from(_NASTY), st.text(min_size=1, max_size=40))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("verbatim") / "data", "--admin-token", ADMIN)
    yield srv
    srv.stop()


def _send_all_formats(server: Server, value: str, n: int) -> None:
    key = server.write_key
    # "n" keeps Bloomreach commands (deduplicated by a hash of their data) apart.
    props = {"s": value, f"k:{value}": "key", "n": n}
    sent = [
        httpx.post(
            f"{server.url}/v1/track",
            json={"userId": value, "event": value, "messageId": f"s{n}", "properties": props},
            auth=(key, ""),
        ),
        httpx.post(
            f"{server.url}/web/projects/{key}/batch",
            json={
                "profile_id": value,
                "events": [{"type": "track", "event": value, "message_id": f"k{n}", "properties": props}],
            },
        ),  # fmt: skip
        httpx.post(
            f"{server.url}/track/v2/projects/{key}/customers/events",
            # Bloomreach refuses blank or placeholder ids by its own rules: the id stays plain.
            json={"customer_ids": {"registered": "c1"}, "event_type": value, "properties": props},
            headers={"Authorization": f"Token {key}"},
        ),
        httpx.post(
            f"{server.url}/analytics/v1/track",
            json={"userId": value, "event": value, "messageId": f"v{n}", "properties": props},
            headers={"Authorization": f"Basic {key}"},
        ),
    ]
    assert [r.status_code for r in sent] == [200] * 4, [r.text for r in sent]
    assert sent[2].json()["success"] is True, sent[2].text


_counter = iter(range(10**9))


def _end_of_log(server: Server) -> int:
    cursor = 0
    for _ in range(1000):
        page = httpx.get(
            f"{server.url}/v1/events",
            params={"after": cursor, "limit": 1000},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()
        if page["next"] == cursor:
            return cursor
        cursor = page["next"]
    raise AssertionError("the log did not end")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(value=nasty)
def test_nasty_strings_are_stored_and_returned_verbatim(server: Server, value: str) -> None:
    n = next(_counter)
    cursor = _end_of_log(server)
    _send_all_formats(server, value, n)
    answer = httpx.get(
        f"{server.url}/v1/events", params={"after": cursor}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    # JSON, never HTML, and no CORS on the admin API: a browser renders and shares nothing.
    assert answer.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in answer.headers
    events = answer.json()["events"]
    assert [e["source"]["format"] for e in events] == ["segment", "koala", "bloomreach", "vitally"]
    for event in events:
        assert event["event"] == value
        assert event["properties"]["s"] == value and event["properties"][f"k:{value}"] == "key"
    # The CLI reads the same back, one JSON object a line. (Split on "\n" only: str.splitlines,
    # as conftest's Server.events uses, also splits inside values holding U+2028 or U+0085.)
    out = cli("events", "--data-dir", str(server.data_dir), "--json", "--after", str(cursor))
    assert [msgspec.json.decode(line)["event"] for line in out.rstrip("\n").split("\n")] == [value] * 4


def test_the_store_is_unharmed_by_what_it_stored(server: Server) -> None:
    for value in _NASTY:
        _send_all_formats(server, value, next(_counter))
    db = Path(server.data_dir) / "trackyard.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"log", "sources", "rejects"} <= tables
        assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 1
    assert not list(Path(server.data_dir).parent.glob("passwd*"))

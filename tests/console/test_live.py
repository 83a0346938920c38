"""The live stream over real HTTP: what it sends, resuming, filters, and sampling under a flood."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from tests.conftest import Server
from tests.console.conftest import TOKEN, signed_in
from trackyard.console.live import SCAN_MAX, SEND_MAX
from trackyard.snippets import README_SNIPPETS, every_client


def first_batch(client: httpx.Client, query: str = "", resume: str | None = None) -> dict[str, Any]:
    headers = {"Last-Event-ID": resume} if resume else {}
    with client.stream("GET", f"/console/live/stream?{query}", headers=headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "batch":
                batch: dict[str, Any] = msgspec.json.decode(line[6:])
                return batch
    raise AssertionError("the stream ended without a batch")


def streamed_events(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    """Every event one whole stream sends (it ends by itself after a few seconds)."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", f"/console/live/stream?{query}") as answer:
        event = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "batch":
                events += msgspec.json.decode(line[6:])["events"]
    return events


def post_batch(server: Server, items: list[dict[str, Any]], route: str = "/v1/batch") -> None:
    answer = httpx.post(f"{server.url}{route}", json={"batch": items}, auth=(server.write_key, ""))
    assert answer.status_code == 200, answer.text


def test_the_stream_carries_events_with_their_request_and_rejects(console_server: Server) -> None:
    post_batch(
        console_server,
        [
            {"type": "track", "userId": "live-1", "event": "Live Tested", "context": {"userAgent": "UA/1"}},
            {"type": "track", "userId": "live-1"},  # no event name: rejected alone
        ],
        route="/v1/b",  # a browser's route: Segment (and trackyard) record context.ip for those
    )
    with signed_in(console_server) as client:
        batch = first_batch(client, "user=live-1")
    (event,) = batch["events"]
    assert event["event"] == "Live Tested" and event["type"] == "track"
    assert event["route"] == "/v1/b" and event["format"] == "segment" and event["source"] == "web"
    assert event["ip"] == "127.0.0.1" and event["user_agent"] == "UA/1"
    assert msgspec.json.decode(event["raw"])["messageId"] == event["message_id"]
    codes = [r["code"] for r in batch["rejects"]]
    assert "event_not_defined" in codes


def test_filters_and_resume(console_server: Server) -> None:
    tracks = [{"type": "track", "userId": "f-1", "event": f"Filtered {i}"} for i in range(3)]
    post_batch(console_server, tracks)
    post_batch(console_server, [{"type": "identify", "userId": "f-1", "traits": {"a": 1}}])
    with signed_in(console_server) as client:
        shown = first_batch(client, "user=f-1&type=track")["events"]
        assert [e["event"] for e in shown] == ["Filtered 0", "Filtered 1", "Filtered 2"]
        named = first_batch(client, "user=f-1&event=filtered%202")["events"]
        assert [e["event"] for e in named] == ["Filtered 2"]
        assert streamed_events(client, "user=f-1&format=koala") == []
        # Resuming after the first track event sends what followed it only.
        after = first_batch(client, "user=f-1", resume=f"{shown[0]['seq']}:0")["events"]
        assert [e["seq"] for e in after] == [e["seq"] for e in shown[1:]] + [after[-1]["seq"]]
        assert after[-1]["type"] == "identify"
        unknown = client.get("/console/live/stream?source=nope")
        assert "No source named" in unknown.text


def test_a_flood_is_sampled_and_says_so(console_server: Server) -> None:
    flood = [{"type": "track", "userId": "flood", "event": f"Flood {i}"} for i in range(2_500)]
    post_batch(console_server, flood)
    with signed_in(console_server) as client:
        batch = first_batch(client, resume="0:0")
        # A filter the read cannot apply (the user): the newest SCAN_MAX are read and decoded
        # until SEND_MAX match.
        filtered = first_batch(client, "user=flood", resume="0:0")
    status = batch["status"]
    head = status["head"]
    assert status["sampling"] is True
    # No filters: only the newest SEND_MAX are read, the ones sent; the rest is left out.
    assert status["scanned"] == SEND_MAX
    assert status["left_out"] == head - SEND_MAX
    assert [e["seq"] for e in batch["events"]] == list(range(head - SEND_MAX + 1, head + 1))
    assert batch["events"][-1]["event"] == "Flood 2499"
    # Everything before the newest SCAN_MAX, and all but the newest SEND_MAX of those, left out.
    assert filtered["status"]["scanned"] == SCAN_MAX
    assert filtered["status"]["left_out"] == head - SEND_MAX
    assert [e["seq"] for e in filtered["events"]] == list(range(head - SEND_MAX + 1, head + 1))


def test_the_snippets_are_the_readmes() -> None:
    """The sources page shows README_SNIPPETS; the README's blocks are what tests/test_readme.py runs."""
    from tests.test_readme import snippets

    readme = {name: code for name, _, code in snippets()}
    assert {s.name: s.code for s in README_SNIPPETS} == readme
    filled = {s.name: s.code for s in every_client("https://t.example", "KEY-1")}
    assert "curl -u 'KEY-1:'" in filled["curl"] and "https://t.example/v1/track" in filled["curl"]
    assert "'KEY-1'" in filled["node-segment"] and "https://t.example" in filled["browser-rudderstack"]
    assert "protocol" not in filled["browser-segment"]  # behind https the option is left out
    assert "protocol: 'http'" in every_client("http://h:1", "K")[5].code


def test_a_stream_ends_by_itself_with_where_to_resume(console_server: Server) -> None:
    """So a stopping server never waits on an open debugger; EventSource reconnects with the id."""
    post_batch(console_server, [{"type": "track", "userId": "ends-1", "event": "Before The Stream"}])
    with signed_in(console_server) as client, client.stream("GET", "/console/live/stream") as answer:
        lines = list(answer.iter_lines())  # returns only because the server ends the stream
    assert lines[0] == "retry: 250"
    last_id = [line for line in lines if line][-1]
    assert last_id.startswith("id: ")  # the last thing sent is the cursor, even after a quiet stream
    events_cursor = int(last_id[4:].split(":")[0])
    # The cursor is the log's head: the reconnection goes on after everything already stored.
    after = httpx.get(
        f"{console_server.url}/v1/events?after={events_cursor}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert events_cursor > 0 and after.json()["events"] == []

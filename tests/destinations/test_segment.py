"""The segment kind between two real trackyard servers: what A stores arrives in B, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, cli, start_server
from tests.destinations.conftest import poll

_FAST = {
    "TRACKYARD_DESTINATION_BACKOFF_SECONDS": "0.01",
    "TRACKYARD_DESTINATION_BACKOFF_CAP_SECONDS": "0.05",
}


def _batch(n: int) -> list[dict[str, Any]]:
    kinds: list[dict[str, Any]] = [
        {"type": "track", "event": "Order Completed", "properties": {"revenue": 12.5, "items": [1, 2]}},
        {"type": "identify", "traits": {"email": "a@example.com", "plan": "pro"}},
        {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}},
        {"type": "group", "groupId": "g1", "traits": {"name": "Acme"}},
    ]
    return [
        {
            **kinds[i % len(kinds)],
            "messageId": f"msg-{i}",
            "userId": f"user-{i % 7}",
            "anonymousId": f"anon-{i}",
        }
        for i in range(n)
    ]


def _same(event: dict[str, Any]) -> dict[str, Any]:
    keys = ("messageId", "type", "userId", "anonymousId", "event", "name", "properties", "traits", "groupId")
    return {key: event.get(key) for key in keys}


def test_events_sent_to_a_arrive_in_b_with_the_same_ids_and_fields(tmp_path: Path) -> None:
    b = start_server(tmp_path / "b")
    a: Server | None = None
    try:
        a_dir = tmp_path / "a"
        a_key = cli("sources", "add", "web", "--data-dir", str(a_dir)).strip()
        cli(
            "destinations", "add", "to-b", "--format", "segment", "--url", b.url, "--key", b.write_key,
            "--data-dir", str(a_dir),
        )  # fmt: skip
        a = Server(a_dir, env=_FAST)
        a.write_key = a_key
        a.start()
        sent = _batch(300)
        for start in range(0, len(sent), 100):
            response = httpx.post(
                f"{a.url}/v1/batch", json={"batch": sent[start : start + 100]}, auth=(a_key, "")
            )
            assert response.status_code == 200, response.text
        poll(lambda: len(b.events()) >= len(sent), timeout=60)
        arrived = b.events()
        assert sorted(map(_same, arrived), key=lambda e: e["messageId"]) == sorted(
            (_same(e) for e in a.events()), key=lambda e: e["messageId"]
        )
        assert {e["messageId"] for e in arrived} == {e["messageId"] for e in sent}

        # Replaying everything sends it all again: B dedups by messageId and stores each once.
        out = cli("destinations", "replay", "to-b", "--after", "0", "--data-dir", str(a_dir))
        assert "300 delivered, 0 dead-lettered" in out
        assert len(b.events()) == len(sent)
        shown = cli("destinations", "show", "to-b", "--data-dir", str(a_dir))
        assert "lag: 0" in shown
        assert b.write_key not in shown
    finally:
        if a is not None:
            a.stop()
        b.stop()

"""The profile API's guard, errors and paging, over real HTTP."""

from __future__ import annotations

import httpx

from tests.conftest import Server
from tests.profiles.conftest import ADMIN, caught_up, get, segment


def test_the_profile_api_needs_the_admin_token(srv: Server) -> None:
    segment(srv, {"type": "identify", "userId": "u-1"})
    caught_up(srv)
    for path in (
        "/v1/profiles/user_id:u-1",
        "/v1/profiles/user_id:u-1/events",
        "/v1/accounts/g",
        "/v1/profiles-status",
    ):
        assert httpx.get(f"{srv.url}{path}").status_code == 401
        assert httpx.get(f"{srv.url}{path}", headers={"Authorization": "Bearer nope"}).status_code == 401
        as_write_key = httpx.get(f"{srv.url}{path}", auth=(srv.write_key, ""))
        assert as_write_key.status_code == 401 and as_write_key.json()["code"] == "invalid_admin_token"
    assert get(srv, "/v1/profiles/user_id:u-1").status_code == 200


def test_without_an_admin_token_the_profile_api_is_off(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/profiles/user_id:u-1", headers=ADMIN)
    assert response.status_code == 404 and response.json()["code"] == "admin_api_off"


def test_an_unknown_profile_is_a_404_with_a_clear_body(srv: Server) -> None:
    segment(srv, {"type": "group", "userId": "u-1", "groupId": "g-1"})
    caught_up(srv)
    for path in (
        "/v1/profiles/email:nobody@example.com",
        "/v1/profiles/user_id:nobody/events",
        "/v1/profiles/id:999",
    ):
        response = get(srv, path)
        assert response.status_code == 404
        body = response.json()
        assert body["success"] is False and body["code"] == "person_not_found"
        assert "No person has the id" in body["message"]
    # An account is not a person, and a person is not an account.
    assert get(srv, "/v1/profiles/group_id:g-1").status_code == 404
    assert get(srv, "/v1/accounts/user_id:u-1").json()["code"] == "account_not_found"
    assert get(srv, "/v1/profiles/no-colon").json()["code"] == "invalid_person_ref"
    assert get(srv, "/v1/profiles/user_id:u-1/nope").status_code == 404
    assert get(srv, "/v1/profiles/user_id:u-1/events", limit="x").status_code == 400


def test_ids_with_reserved_characters(srv: Server) -> None:
    odd = "a/b?c#d %e:f@g.h"
    segment(srv, {"type": "identify", "userId": odd, "traits": {"email": "o'neil+tag@example.com"}})
    caught_up(srv)
    quoted = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in odd)
    found = get(srv, f"/v1/profiles/user_id:{quoted}/identities").json()
    assert {(i["type"], i["value"]) for i in found["identities"]} == {
        ("user_id", odd),
        ("email", "o'neil+tag@example.com"),
    }
    assert get(srv, "/v1/profiles/email:o'neil%2Btag@example.com").status_code == 200


def test_events_page_newest_first_across_all_ids(srv: Server) -> None:
    segment(srv, *({"type": "page", "anonymousId": "anon", "name": f"P{i}"} for i in range(5)))
    segment(srv, {"type": "identify", "userId": "u", "anonymousId": "anon"})
    segment(srv, *({"type": "track", "userId": "u", "event": f"T{i}"} for i in range(4)))
    caught_up(srv)
    seen: list[str] = []
    before = None
    while True:
        params = {"limit": 3, **({"before": before} if before is not None else {})}
        page = get(srv, "/v1/profiles/user_id:u/events", **params).json()
        seen += [
            e["event"].get("event") or e["event"].get("name") or e["event"]["type"] for e in page["events"]
        ]
        before = page["next"]
        if before is None:
            break
    assert seen == ["T3", "T2", "T1", "T0", "identify", "P4", "P3", "P2", "P1", "P0"]


def test_status_reports_cursor_head_and_lag(srv: Server) -> None:
    segment(srv, *({"type": "track", "userId": f"u{i}", "event": "E"} for i in range(7)))
    status = caught_up(srv)
    assert status["cursor"] == status["head"] == 7 and status["processed"] == 7
    assert status["people"] == 7 and status["rules"]["soft_id_owner"] == "newer"

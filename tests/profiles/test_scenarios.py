"""Profiles built across the four formats, through a real server, read back over HTTP and the CLI."""

from __future__ import annotations

import msgspec

from tests.conftest import Server, cli
from tests.profiles.conftest import bloomreach, caught_up, get, ids, koala, segment, vitally


def test_an_anonymous_visitor_becomes_one_person_across_all_formats(srv: Server) -> None:
    # An anonymous browser visitor: Segment page calls.
    segment(
        srv,
        {"type": "page", "anonymousId": "anon-7", "name": "Home", "timestamp": "2024-03-01T10:00:00Z"},
        {"type": "page", "anonymousId": "anon-7", "name": "Pricing", "timestamp": "2024-03-01T10:01:00Z"},
    )
    # Signs up: identify with userId and email.
    segment(
        srv,
        {
            "type": "identify",
            "userId": "u-42",
            "anonymousId": "anon-7",
            "traits": {"email": "Ann@Example.com", "plan": "free", "name": "Ann"},
            "timestamp": "2024-03-01T10:05:00Z",
        },
    )
    # Updated through Bloomreach by the `registered` id.
    bloomreach(
        srv,
        {
            "name": "customers",
            "data": {
                "customer_ids": {"registered": "u-42"},
                "properties": {"plan": "pro"},
                "update_timestamp": 1709290000,  # 2024-03-01T10:46:40Z
            },
        },
        {
            "name": "customers/events",
            "data": {
                "customer_ids": {"registered": "u-42"},
                "event_type": "purchase",
                "timestamp": 1709290100,
            },
        },
    )
    # Through Vitally, as a user of an account inside an organization.
    vitally(
        srv,
        {
            "type": "organization",
            "organizationId": "org-1",
            "traits": {"name": "Acme Group"},
            "messageId": "o1",
        },
        {
            "type": "account",
            "accountId": "acct-1",
            "organizationId": "org-1",
            "traits": {"name": "Acme"},
            "messageId": "a1",
        },
        {
            "type": "user",
            "userId": "u-42",
            "accountId": "acct-1",
            "traits": {"role": "admin"},
            "timestamp": "2024-03-01T11:00:00Z",
            "messageId": "u1",
        },
    )
    status = caught_up(srv)
    assert status["people"] == 1 and status["accounts"] == 2

    profile = get(srv, "/v1/profiles/email:ann@example.com").json()
    assert ids(profile) == {
        "anonymous_id:anon-7",
        "user_id:u-42",
        "email:ann@example.com",
        "registered:u-42",
    }
    assert profile["traits"] == {"email": "Ann@Example.com", "plan": "pro", "name": "Ann", "role": "admin"}
    assert [a["identities"] for a in profile["accounts"]] == [
        [{"type": "vitally_account_id", "value": "acct-1"}]
    ]
    assert profile["first_seen"] == "2024-03-01T10:00:00.000Z"
    assert profile["event_count"] == 6
    # The same person by every one of their ids, %-encoded or not, and by canonical field names.
    for ref in (
        "user_id:u-42",
        "userId:u-42",
        "anonymous_id:anon-7",
        "registered:u-42",
        "email:ann%40example.com",
    ):
        assert get(srv, f"/v1/profiles/{ref}").json()["id"] == profile["id"]

    events = get(srv, "/v1/profiles/user_id:u-42/events").json()["events"]
    assert [e["event"]["type"] for e in events] == [
        "identify",
        "track",
        "identify",
        "identify",
        "page",
        "page",
    ]
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)

    account = get(srv, "/v1/accounts/acct-1").json()
    assert account["traits"] == {"name": "Acme"}
    assert [p["identities"] for p in account["parents"]] == [
        [{"type": "vitally_organization_id", "value": "org-1"}]
    ]
    members = get(srv, "/v1/accounts/vitally_account_id:acct-1/members").json()["members"]
    assert [m["id"] for m in members] == [profile["id"]]
    org_members = get(srv, "/v1/accounts/vitally_organization_id:org-1/members").json()["members"]
    assert [m["id"] for m in org_members] == [account["id"]]

    # The CLI shows the same.
    shown = msgspec.json.decode(
        cli("profiles", "show", "email:ann@example.com", "--json", "--data-dir", str(srv.data_dir))
    )
    assert shown == profile
    lines = cli(
        "profiles", "events", "user_id:u-42", "--json", "--limit", "2", "--data-dir", str(srv.data_dir)
    )
    assert [msgspec.json.decode(line)["type"] for line in lines.splitlines()] == ["identify", "track"]
    shown_account = cli(
        "accounts", "show", "vitally_account_id:acct-1", "--json", "--data-dir", str(srv.data_dir)
    )
    assert msgspec.json.decode(shown_account)["id"] == account["id"]


def test_koala_visitor_and_account(srv: Server) -> None:
    koala(srv, {"profile_id": "ko-1", "page_views": [{"type": "page", "name": "Docs"}]})
    koala(
        srv,
        {
            "profile_id": "ko-1",
            "email": "Bob@Example.com",
            "identifies": [{"type": "identify", "traits": {"title": "CTO"}}],
        },
    )
    koala(
        srv,
        {
            "account_id": "k-acct",
            "domain": "example.com",
            "identifies": [{"type": "identify", "traits": {"name": "Example"}}],
        },
        "account",
    )
    koala(srv, {"domain": "example.com", "events": [{"type": "track", "event": "Renewed"}]}, "account")
    caught_up(srv)
    person = get(srv, "/v1/profiles/anonymous_id:ko-1").json()
    # Koala's userId is the email: read as the email id, not as a user_id.
    assert ids(person) == {"anonymous_id:ko-1", "email:bob@example.com"}
    assert person["traits"] == {"title": "CTO"}
    account = get(srv, "/v1/accounts/domain:example.com").json()
    assert ids(account) == {"koala_account_id:k-acct", "domain:example.com"}
    assert account["traits"] == {"name": "Example"} and account["event_count"] == 2


def test_segment_group_alias_and_unlink(srv: Server) -> None:
    segment(
        srv,
        {"type": "track", "anonymousId": "a-1", "event": "Viewed"},
        {"type": "alias", "previousId": "a-1", "userId": "u-1"},
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Globex", "plan": "team"}},
        {"type": "identify", "userId": "u-1", "traits": {"company": {"id": "g-1", "remove": True}}},
    )
    caught_up(srv)
    person = get(srv, "/v1/profiles/anonymous_id:a-1").json()
    assert ids(person) == {"anonymous_id:a-1", "user_id:u-1"}
    assert person["accounts"] == []  # the identify with company.remove left the group
    assert "company" not in person["traits"]
    assert get(srv, "/v1/accounts/group_id:g-1").json()["traits"] == {"name": "Globex", "plan": "team"}
    assert get(srv, "/v1/accounts/g-1/members").json()["members"] == []

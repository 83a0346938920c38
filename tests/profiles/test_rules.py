"""Each identity and trait rule at its edge, driving the builder with canonical events in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.profiles.conftest import at, build, people, person, stored
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.settings import ProfileSettings
from trackyard.storage.base import StoredEvent
from trackyard.storage.sqlite.profiles import SQLiteProfiles


def identify(**fields: Any) -> dict[str, Any]:
    return {"type": "identify", **fields}


@pytest.mark.parametrize(
    "junk", ["null", "NULL", "undefined", "Undefined", "anonymous", "", "  ", "---", "{}"]
)
def test_junk_id_values_are_ignored(tmp_path: Path, junk: str) -> None:
    profiles = build(
        tmp_path,
        [
            identify(userId="u-1", anonymousId=junk, traits={"email": junk}),
            identify(userId="u-2", anonymousId=junk),
            {"type": "track", "anonymousId": junk, "event": "Lost"},
        ],
    )
    # A junk anonymousId never links u-1 and u-2, and an event with only junk ids is no one's.
    assert people(profiles) == [{"user_id:u-1"}, {"user_id:u-2"}]
    assert profiles.counts()["merges"] == 0


def test_the_junk_rules_are_settings(tmp_path: Path) -> None:
    rules = ProfileSettings.from_env(
        {"TRACKYARD_PROFILES_BLOCKED_VALUES": "guest", "TRACKYARD_PROFILES_REQUIRE_ALPHANUMERIC": "false"}
    )
    profiles = build(
        tmp_path,
        [
            identify(userId="u-1", anonymousId="guest"),
            identify(userId="u-2", anonymousId="guest"),
            identify(userId="--"),
        ],
        rules,
    )
    assert people(profiles) == [{"user_id:--"}, {"user_id:u-1"}, {"user_id:u-2"}]


def test_a_value_with_one_alphanumeric_character_is_an_id(tmp_path: Path) -> None:
    profiles = build(
        tmp_path, [identify(userId="u-1", anonymousId="-1-"), {"type": "page", "anonymousId": "-1-"}]
    )
    assert people(profiles) == [{"user_id:u-1", "anonymous_id:-1-"}]
    assert person(profiles, "anonymous_id:-1-")["event_count"] == 2


def test_anonymous_history_joins_the_identified_person(tmp_path: Path) -> None:
    profiles = build(
        tmp_path,
        [
            {"type": "page", "anonymousId": "a-1"},
            {"type": "page", "anonymousId": "a-2"},
            identify(userId="u-1", traits={"email": "ann@example.com"}),
            identify(userId="u-1", anonymousId="a-1"),  # a-1's profile is older: u-1's joins it
            {"type": "alias", "previousId": "a-2", "userId": "u-1"},
        ],
    )
    assert people(profiles) == [
        {"anonymous_id:a-1", "anonymous_id:a-2", "user_id:u-1", "email:ann@example.com"}
    ]
    found = person(profiles, "user_id:u-1")
    assert found["event_count"] == 5 and found["first_seen"] == at(0)
    merges = [(m["action"], m["into"], m["from"], m["via"]["type"]) for m in found["merges"]]
    # The older profile survives: a-1's (1) takes u-1's (3), then a-2's (2) joins it.
    assert merges == [("merge", 1, 3, "anonymous_id"), ("merge", 1, 2, "anonymous_id")]
    assert found["id"] == 1
    assert person(profiles, "id:3")["id"] == 1  # a merged profile's id leads to the survivor


@pytest.mark.parametrize("id_type", ["userId", "registered"])
def test_profiles_with_different_values_of_a_unique_id_are_never_merged(tmp_path: Path, id_type: str) -> None:
    def ids(value: str) -> dict[str, Any]:
        if id_type == "userId":
            return {"userId": value}
        return {"context": {"externalIds": [{"id": value, "type": "registered", "collection": "users"}]}}

    profiles = build(
        tmp_path,
        [
            identify(**ids("x-1"), traits={"email": "shared@example.com"}),
            identify(**ids("x-2"), traits={"email": "shared@example.com"}),
            {"type": "alias", "previousId": "x-1", "userId": "x-2"}
            if id_type == "userId"
            else identify(**ids("x-2")),
        ],
    )
    current = people(profiles)
    assert len(current) == 2 and profiles.counts()["merges"] == 0
    # The shared soft id (email) moved to the newer profile, as in Bloomreach.
    email_holder = person(profiles, "email:shared@example.com")
    assert email_holder["id"] == 2
    assert [m["action"] for m in email_holder["merges"]] == ["move"]


def test_a_second_value_of_a_unique_type_is_not_linked(tmp_path: Path) -> None:
    registered = {"context": {"externalIds": [{"id": "r-9", "type": "registered", "collection": "users"}]}}
    profiles = build(tmp_path, [identify(userId="u-1", **registered), identify(userId="u-2", **registered)])
    # The second event is about u-2 (user_id decides first); r-9 stays with u-1.
    assert people(profiles) == [{"user_id:u-1", "registered:r-9"}, {"user_id:u-2"}]


@pytest.mark.parametrize(("owner", "holder"), [("newer", 2), ("latest", 1)])
def test_who_keeps_a_contested_soft_id(tmp_path: Path, owner: str, holder: int) -> None:
    rules = ProfileSettings.from_env({"TRACKYARD_PROFILES_SOFT_ID_OWNER": owner})
    profiles = build(
        tmp_path,
        [
            identify(userId="ann", anonymousId="ipad"),
            identify(userId="bob", anonymousId="ipad"),  # bob's profile (2) is newer: it takes the iPad
            identify(userId="ann", anonymousId="ipad"),  # ann claims it last
            {"type": "page", "anonymousId": "ipad"},
        ],
        rules,
    )
    assert person(profiles, "anonymous_id:ipad")["id"] == holder
    # Events stay with the profile they were attributed to when they happened.
    assert person(profiles, "user_id:ann")["event_count"] == 2 + (holder == 1)


def test_unique_types_are_a_setting(tmp_path: Path) -> None:
    rules = ProfileSettings.from_env({"TRACKYARD_PROFILES_UNIQUE_ID_TYPES": "registered"})
    profiles = build(
        tmp_path, [identify(userId="u-1", anonymousId="a"), identify(userId="u-2", anonymousId="a")], rules
    )
    assert people(profiles) == [{"user_id:u-1", "user_id:u-2", "anonymous_id:a"}]


def test_traits_last_write_wins_by_event_time_with_history(tmp_path: Path) -> None:
    profiles = build(
        tmp_path,
        [
            identify(userId="u", traits={"plan": "pro", "seats": 5}, timestamp=at(100)),
            identify(userId="u", traits={"plan": "free"}, timestamp=at(50)),  # older: kept in history only
            identify(userId="u", traits={"seats": 7}, timestamp=at(100)),  # same time: the later seq wins
        ],
    )
    found = person(profiles, "user_id:u")
    assert found["traits"] == {"plan": "pro", "seats": 7}
    history = [(w.name, w.value, w.applied) for w in profiles.trait_history(found["id"])]
    assert history == [
        ("plan", b'"free"', False),
        ("plan", b'"pro"', True),
        ("seats", b"5", True),
        ("seats", b"7", True),
    ]


def test_bloomreach_update_timestamp_decides(tmp_path: Path) -> None:
    def update(first_name: str, update_timestamp: float, received: int) -> dict[str, Any]:
        return identify(
            userId="r-1",
            traits={"first_name": first_name},
            timestamp=at(received),
            source={"format": "bloomreach"},
            context={
                "externalIds": [{"id": "r-1", "type": "registered", "collection": "users"}],
                "bloomreach": {"name": "customers", "data": {"update_timestamp": update_timestamp}},
            },
        )

    # Bloomreach does not run a batch in order: the newer update may arrive first.
    profiles = build(tmp_path, [update("Ann", 1_800_000_000, 1), update("Anna", 1_700_000_000.5, 2)])
    assert person(profiles, "registered:r-1")["traits"] == {"first_name": "Ann"}


def test_merged_traits_keep_the_newest_value_of_each(tmp_path: Path) -> None:
    profiles = build(
        tmp_path,
        [
            identify(anonymousId="a", traits={"color": "red", "size": "L"}, timestamp=at(10)),
            identify(userId="u", traits={"color": "blue"}, timestamp=at(5)),
            identify(userId="u", anonymousId="a", timestamp=at(20)),
        ],
    )
    assert person(profiles, "user_id:u")["traits"] == {"color": "red", "size": "L"}


def test_vitally_membership_and_unlink(tmp_path: Path) -> None:
    def user(account: str) -> dict[str, Any]:
        return identify(
            userId="v-1",
            traits={},
            source={"format": "vitally"},
            context={
                "vitally": {"type": "user"},
                "externalIds": [{"id": account, "type": "vitally_account_id", "collection": "accounts"}],
            },
        )

    unlink = identify(
        userId="v-1",
        traits={"company": {"id": "acc-1", "remove": True}},
        source={"format": "vitally"},
        context={"vitally": {"type": "unlink"}},
    )
    profiles = build(tmp_path, [user("acc-1"), user("acc-2"), unlink])
    found = person(profiles, "user_id:v-1")
    assert [a["identities"][0]["value"] for a in found["accounts"]] == ["acc-2"]
    assert found["traits"] == {}


def test_each_batch_size_gives_the_same_profiles(tmp_path: Path) -> None:
    events = [
        {"type": "page", "anonymousId": "a"},
        identify(userId="u", anonymousId="a", traits={"x": 1}),
        identify(userId="v", anonymousId="a"),
        {"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "G"}},
        identify(userId="u", anonymousId="b"),
        {"type": "alias", "previousId": "b", "userId": "v"},
    ]
    snapshots = [build(tmp_path / str(size), events, batch=size).snapshot() for size in (1, 2, 3, 500)]
    assert all(s == snapshots[0] for s in snapshots)


def test_events_the_typed_view_cannot_read_are_read_field_by_field(tmp_path: Path) -> None:
    """The builder decodes only the fields it needs, into a typed view; odd shapes fall back."""
    profiles = build(
        tmp_path,
        [
            # context and source that are not objects: taken as empty, the ids still count
            identify(userId="u-1", anonymousId="a-1", context="not an object", source=[1]),
            # a non-list externalIds is ignored, not an error
            {"type": "track", "anonymousId": "a-1", "context": {"externalIds": 7}, "event": "Seen"},
            # a Koala source is read through a view too: its userId is not a user_id
            {"type": "track", "userId": "k@x.io", "source": {"format": "koala"}, "event": "Seen"},
        ],
    )
    assert people(profiles) == [{"user_id:u-1", "anonymous_id:a-1"}]
    assert person(profiles, "user_id:u-1")["event_count"] == 2


def test_log_entries_that_are_not_event_objects_are_skipped(tmp_path: Path) -> None:
    profiles = SQLiteProfiles(tmp_path)
    log = [
        StoredEvent(1, 1, "track", b"[1, 2]"),
        StoredEvent(2, 1, "track", b"{not json"),
        *stored([identify(userId="u-1")], first_seq=3),
    ]
    progress = ProfileBuilder(profiles, ProfileSettings()).apply(log)
    assert (progress.cursor, progress.processed) == (3, 3)
    assert people(profiles) == [{"user_id:u-1"}]

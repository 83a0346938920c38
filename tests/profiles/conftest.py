"""Fixtures for profile tests: a real server with the admin API on, and ways to feed it.

Nothing here sleeps to synchronise: :func:`caught_up` polls the status endpoint until
the consumer's lag is 0, with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import Server, start_server
from trackyard.config import Settings
from trackyard.event import format_timestamp
from trackyard.profiles.builder import ProfileBuilder
from trackyard.profiles.facts import PERSON, split_key
from trackyard.profiles.recent import DEFAULT_LIMIT
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.views import ProfileViews
from trackyard.storage.base import StoredEvent
from trackyard.storage.sqlite.profiles import SQLiteProfiles
from trackyard.storage.sqlite.store import SQLiteStore

TOKEN = "profiles-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
#: httpx's default of 5 s is too short for a request to a server on a loaded 2-core machine
#: (an HTTP worker still importing, or busy with a batch): the tests wait for answers, not speed.
HTTP_TIMEOUT = 60.0


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "data", "--admin-token", TOKEN)
    yield server
    server.stop()


def caught_up(server: Server, timeout: float = 20.0) -> dict[str, Any]:
    """Poll ``GET /v1/profiles-status`` until the consumer has applied the whole log."""
    deadline = time.monotonic() + timeout
    while True:
        current: dict[str, Any] = httpx.get(
            f"{server.url}/v1/profiles-status", headers=ADMIN, timeout=HTTP_TIMEOUT
        ).json()
        if current["lag"] == 0 and current["running"] and not current["rebuild_pending"]:
            return current
        assert time.monotonic() < deadline, f"the consumer did not catch up: {current}"
        time.sleep(0.02)


def get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers=ADMIN, params=params, timeout=HTTP_TIMEOUT)


def segment(server: Server, *calls: dict[str, Any]) -> None:
    response = httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": list(calls)},
        auth=(server.write_key, ""),
        timeout=HTTP_TIMEOUT,
    )
    assert response.json() == {"success": True}, response.text


def bloomreach(server: Server, *commands: dict[str, Any]) -> None:
    response = httpx.post(
        f"{server.url}/track/v2/projects/{server.write_key}/batch",
        json={"commands": list(commands)},
        headers={"Authorization": f"Token {server.write_key}"},
        timeout=HTTP_TIMEOUT,
    )
    assert all(r["success"] for r in response.json()["results"]), response.text


def vitally(server: Server, *messages: dict[str, Any]) -> None:
    response = httpx.post(
        f"{server.url}/analytics/v1/batch",
        json=list(messages),
        headers={"Authorization": f"Basic {server.write_key}"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text


def koala(server: Server, body: dict[str, Any], level: str = "") -> None:
    path = "accounts/batch" if level == "account" else "batch"
    response = httpx.post(
        f"{server.url}/web/projects/{server.write_key}/{path}", json=body, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200, response.text


def ids(body: dict[str, Any]) -> set[str]:
    return {f"{i['type']}:{i['value']}" for i in body["identities"]}


# -- in-process: the builder over real SQLite files, fed canonical events directly -----------

_T0 = 1_700_000_000


def at(second: int) -> str:
    """A canonical timestamp ``second`` seconds after a fixed start."""
    return format_timestamp((_T0 + second) * 1_000_000)


def stored(events: list[dict[str, Any]], first_seq: int = 1) -> list[StoredEvent]:
    """Canonical events as the log stores them, with consecutive seqs."""
    out = []
    for offset, event in enumerate(events):
        body = {"timestamp": at(offset), "source": {"format": "segment"}, **event}
        out.append(StoredEvent(first_seq + offset, 1, str(body["type"]), msgspec.json.encode(body)))
    return out


def build(
    path: Path,
    events: list[dict[str, Any]],
    settings: ProfileSettings | None = None,
    batch: int = 500,
    store: Callable[[Path], SQLiteProfiles] = SQLiteProfiles,
    recent: int = DEFAULT_LIMIT,
) -> SQLiteProfiles:
    """Apply ``events`` to a fresh profile store under ``path``, ``batch`` events per transaction
    (``recent``: profiles the builder keeps across batches)."""
    profiles = store(path)
    builder = ProfileBuilder(profiles, settings or ProfileSettings(), recent)
    log = stored(events)
    for start in range(0, len(log), batch):
        builder.apply(log[start : start + batch])
    return profiles


def person(profiles: SQLiteProfiles, ref: str) -> dict[str, Any]:
    """The summary the API would answer for ``ref`` (read without the event log)."""
    store = SQLiteStore(Settings(data_dir=profiles.path.parent), writer=False)
    try:
        views = ProfileViews(store, profiles, ProfileSettings())
        return views.summary(views.find(PERSON, ref))
    finally:
        store.close()


def people(profiles: SQLiteProfiles) -> list[set[str]]:
    """Every current person as the set of their ids, ``type:value``, in a stable order."""
    grouped: dict[int, set[str]] = {}
    for key, pid, *_ in profiles.snapshot()["identities"]:
        kind, id_type, value = split_key(key)
        if kind == PERSON:
            grouped.setdefault(pid, set()).add(f"{id_type}:{value}")
    return sorted(grouped.values(), key=sorted)

"""The official exponea-python-sdk (0.2.0), unmodified, against a real trackyard server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from exponea_python_sdk.client import Exponea
from exponea_python_sdk.exceptions import APIException

from tests.conftest import Server
from tests.http.routes.test_bloomreach_api import server_with_secret

SECRET = "sdk-secret-1"


@pytest.fixture(scope="module")
def br(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = server_with_secret(tmp_path_factory, SECRET)
    yield srv
    srv.stop()


def client(server: Server, password: str = SECRET, username: str | None = None) -> Any:
    key = server.write_key
    return Exponea(key, username=key if username is None else username, password=password, url=server.url)


def mine(server: Server, user: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("userId") == user]


def test_system_time(br: Server) -> None:
    now = client(br).tracking.get_system_time()
    assert isinstance(now, float) and abs(now - time.time()) < 60


def test_update_customer_properties_and_add_event(br: Server) -> None:
    user = f"ann-{uuid.uuid4().hex[:8]}@example.com"
    tracking = client(br).tracking
    assert tracking.update_customer_properties({"registered": user}, {"first_name": "Ann"}) is True
    # No properties and no timestamp: the SDK sends both as null.
    assert tracking.add_event({"registered": user, "cookie": "ck-1"}, "session_start") is True
    assert (
        tracking.add_event({"registered": user}, "purchase", {"total": 9.5}, timestamp=1700000000.25) is True
    )
    events = mine(br, user)
    identify = next(e for e in events if e["type"] == "identify")
    assert identify["traits"] == {"first_name": "Ann"}
    session = next(e for e in events if e.get("event") == "session_start")
    assert session["anonymousId"] == "ck-1"
    assert session["context"]["bloomreach"]["data"] == {"timestamp": None, "properties": None}
    purchase = next(e for e in events if e.get("event") == "purchase")
    assert purchase["properties"] == {"total": 9.5}
    assert purchase["timestamp"] == "2023-11-14T22:13:20.250Z"


def test_batch_commands(br: Server) -> None:
    user = f"bob-{uuid.uuid4().hex[:8]}"
    tracking = client(br).tracking
    results = tracking.batch_commands(
        [
            tracking.get_system_time(batch=True),
            tracking.update_customer_properties({"registered": user}, {"plan": "pro"}, batch=True),
            tracking.add_event(
                {"registered": user}, "purchase", {"total": 1}, timestamp=1700000000, batch=True
            ),
            tracking.add_event({}, "purchase", batch=True),
        ]
    )
    assert isinstance(results[0], float)
    assert results[1:] == [True, True, False]
    assert sorted(e["type"] for e in mine(br, user)) == ["identify", "track"]


def test_errors_raise_api_exception(br: Server) -> None:
    with pytest.raises(APIException, match="invalid secret"):
        client(br, password="wrong").tracking.get_system_time()
    with pytest.raises(APIException, match="invalid secret"):
        client(br, password="wrong").tracking.add_event({"registered": "x"}, "purchase")
    with pytest.raises(APIException, match="Access key not found"):
        client(br, username="someone-else").tracking.update_customer_properties({"registered": "x"}, {"a": 1})
    with pytest.raises(APIException, match="Access key not provided"):
        Exponea(br.write_key, url=br.url).tracking.get_system_time()
    with pytest.raises(APIException, match="At least one valid id should be specified"):
        client(br).tracking.add_event({"registered": "undefined"}, "purchase")
    assert not [e for e in br.events() if e["context"]["externalIds"][0]["id"] == "x"]

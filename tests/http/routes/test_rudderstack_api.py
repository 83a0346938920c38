"""RudderStack's control-plane route: the browser SDK's ``GET /sourceConfig/``."""

from __future__ import annotations

import base64

import httpx

from tests.conftest import Server, cli

ORIGIN = {"Origin": "http://localhost:5173"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_the_source_config_is_what_the_browser_sdk_validates(shared_server: Server) -> None:
    # As @rudderstack/analytics-js asks: Basic auth, and the key again in the query.
    query = {"p": "npm", "v": "3.31.6", "build": "modern", "writeKey": shared_server.write_key}
    answer = httpx.get(
        f"{shared_server.url}/sourceConfig/",
        params=query,
        headers={**basic(shared_server.write_key), **ORIGIN},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == ORIGIN["Origin"]
    source = answer.json()["source"]
    # The SDK's isValidSourceConfig: source.id, a config object, a destinations array.
    assert source["id"] and isinstance(source["config"], dict) and source["destinations"] == []
    assert source["enabled"] is True and source["writeKey"] == shared_server.write_key
    assert source["name"] == "test"
    # Its own error and metrics reporting off: the browser talks to nothing but trackyard.
    assert source["config"]["statsCollection"] == {
        "errors": {"enabled": False},
        "metrics": {"enabled": False},
    }


def test_the_key_may_come_in_the_query_alone_and_either_path_works(shared_server: Server) -> None:
    for path in ("/sourceConfig/", "/sourceConfig"):
        answer = httpx.get(f"{shared_server.url}{path}", params={"writeKey": shared_server.write_key})
        assert answer.status_code == 200 and answer.json()["source"]["name"] == "test", path


def test_the_preflight_allows_the_sdks_authorization_header(shared_server: Server) -> None:
    preflight = httpx.options(
        f"{shared_server.url}/sourceConfig/",
        headers={
            **ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN["Origin"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_bad_keys_get_a_clear_readable_error(server: Server) -> None:
    url = f"{server.url}/sourceConfig/"
    missing = httpx.get(url, headers=ORIGIN)
    assert missing.status_code == 401 and missing.json()["code"] == "invalid_write_key"
    assert "No write key" in missing.json()["message"]
    unknown = httpx.get(url, headers={**basic("nope"), **ORIGIN})
    assert unknown.status_code == 404 and "Unknown write key" in unknown.json()["message"]
    cli("sources", "disable", "test", "--data-dir", str(server.data_dir))
    disabled = httpx.get(url, headers={**basic(server.write_key), **ORIGIN})
    assert disabled.status_code == 404
    assert "trackyard sources enable test" in disabled.json()["message"]
    for answer in (missing, unknown, disabled):
        assert answer.headers["access-control-allow-origin"] == ORIGIN["Origin"]

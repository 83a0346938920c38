"""``trackyard profiles`` and ``accounts``: a miss says what to try, in the CLI's own terms."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.conftest import cli, start_server
from trackyard.cli import main


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    cli("sources", "add", "web", "--data-dir", str(tmp_path))
    return tmp_path


def _miss(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    return result.stderr


def test_a_missing_person_points_to_the_status_command(data_dir: Path) -> None:
    message = _miss(data_dir, "profiles", "show", "email:nobody@example.com")
    assert "No person has the id 'email:nobody@example.com'" in message
    assert "trackyard profiles status" in message and "/v1/" not in message


def test_an_unknown_person_id_type_is_named_with_the_known_ones(data_dir: Path) -> None:
    message = _miss(data_dir, "profiles", "show", "foo:bar")
    assert "'foo' is not one of the usual person id types" in message
    for known in ("user_id", "anonymous_id", "email", "id"):
        assert known in message
    assert "group_id" not in message


def test_a_missing_account_lists_account_id_types_not_person_ones(data_dir: Path) -> None:
    message = _miss(data_dir, "accounts", "show", "nope")
    assert "No account has the id 'nope'" in message
    for known in ("group_id", "vitally_account_id", "vitally_organization_id", "koala_account_id", "domain"):
        assert known in message
    assert "anonymous_id" not in message and "email" not in message
    assert "trackyard profiles status" in message


def test_a_type_of_the_other_kind_says_so(data_dir: Path) -> None:
    assert "group_id names accounts, not people" in _miss(data_dir, "profiles", "show", "group_id:g-1")
    assert "user_id names people, not accounts" in _miss(data_dir, "accounts", "members", "user_id:u-1")


def test_http_keeps_pointing_to_its_own_status_endpoint(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--admin-token", "t0ken")
    try:
        answer = httpx.get(
            f"{server.url}/v1/profiles/foo:bar", headers={"Authorization": "Bearer t0ken"}, timeout=10
        )
        body = answer.json()
        assert answer.status_code == 404 and body["code"] == "person_not_found"
        assert "'foo' is not one of the usual person id types" in body["message"]
        assert "GET /v1/profiles-status" in body["message"] and "trackyard" not in body["message"]
    finally:
        server.stop()

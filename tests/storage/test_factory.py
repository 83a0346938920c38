"""The factory: which backend the settings name, and the errors for those that do not exist."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from trackyard.config import Settings
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import check_store_url, open_backends, store_exists


def test_the_default_store_is_sqlite_files_in_the_data_dir(tmp_path: Path) -> None:
    for url in (None, "sqlite:", "sqlite://", "SQLite:"):
        data = tmp_path / str(url).replace(":", "_").replace("/", "_")
        settings = Settings(data_dir=data, store_url=url)
        assert not store_exists(settings)
        backends = open_backends(settings, writer=True)
        backends.sources.add_source("web")
        backends.close()
        assert store_exists(settings)
        assert (data / "trackyard.db").exists()


def test_a_sqlite_url_with_a_directory_keeps_the_files_there(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere dir"
    settings = Settings(
        data_dir=tmp_path / "data", store_url=f"sqlite://{elsewhere.as_posix().replace(' ', '%20')}"
    )
    backends = open_backends(settings)
    backends.sources.add_source("web")
    backends.profiles().progress()
    backends.close()
    assert (elsewhere / "trackyard.db").exists() and (elsewhere / "profiles.db").exists()
    assert not (tmp_path / "data" / "trackyard.db").exists()
    assert store_exists(settings)
    assert not store_exists(Settings(data_dir=tmp_path / "data"))


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("postgresql://trackyard:hunter2@db.internal/trackyard", "PostgreSQL"),
        ("postgres://trackyard:hunter2@db.internal/trackyard", "PostgreSQL"),
    ],
)
def test_planned_backends_are_refused_as_not_available_yet(tmp_path: Path, url: str, name: str) -> None:
    settings = Settings(data_dir=tmp_path, store_url=url)
    with pytest.raises(StoreURLError) as refused:
        open_backends(settings)
    message = str(refused.value)
    assert name in message and "not available yet (planned)" in message
    assert "sqlite:" in message  # what is available today
    assert "hunter2" not in message  # a URL may carry a password: never echoed
    with pytest.raises(StoreURLError):
        store_exists(settings)
    assert not (tmp_path / "trackyard.db").exists()


def test_a_nats_store_url_says_nats_holds_only_the_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_url="nats://trackyard:hunter2@nats.internal:4222")
    with pytest.raises(StoreURLError) as refused:
        open_backends(settings)
    message = str(refused.value)
    assert "TRACKYARD_LOG" in message and "sqlite:" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://broker:9092", "no event log backend for the scheme 'kafka'"),
        ("nats://", "has the form nats://HOST:PORT"),
        ("nats://a:4222,:4223", "every server needs a host"),
        ("nats://u:hunter2@a:4222?replica=3", "unknown option(s) replica"),
        ("nats://u:hunter2@a:4222?replicas=three", "not a number"),
        ("nats://a:4222?replicas=7", "replicas must be 1 to 5"),
        ("nats://a:4222?stream=a.b", "stream name may hold only"),
        ("nats://a:4222?duplicate_window=0", "duplicate_window must be at least"),
    ],
)
def test_bad_log_urls_get_an_error_naming_the_accepted_form(tmp_path: Path, url: str, says: str) -> None:
    settings = Settings(data_dir=tmp_path, log_url=url)
    with pytest.raises(StoreURLError) as refused:
        open_backends(settings)
    assert says in str(refused.value) and "hunter2" not in str(refused.value)
    with pytest.raises(StoreURLError):
        check_store_url(settings)


def test_log_urls_choose_r3_from_three_servers() -> None:
    from trackyard.storage.nats._url import parse

    assert parse("nats://a:1,b:2,c:3").replicas == 3
    assert parse("nats://a:1").replicas == 1
    assert parse("nats://a:1,b:2,c:3?replicas=1&stream=EV").replicas == 1
    assert parse("nats://a:1/").servers == ("nats://a:1",)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://localhost/db", "no backend for the scheme 'mysql'"),
        ("just-a-path", "must be a URL"),
        ("sqlite:relative/dir", "must be absolute"),
        ("sqlite://host/dir", "no host"),
        ("sqlite:///dir?mode=ro", "no host, query"),
    ],
)
def test_other_urls_get_an_error_naming_what_exists(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(StoreURLError) as refused:
        check_store_url(Settings(data_dir=tmp_path, store_url=url))
    assert says in str(refused.value)
    assert "sqlite:" in str(refused.value)


def test_the_store_url_travels_to_workers_as_trackyard_store() -> None:
    settings = Settings(store_url="sqlite:///srv/trackyard")
    env = settings.to_env()
    assert env["TRACKYARD_STORE"] == "sqlite:///srv/trackyard"
    assert Settings.from_env(env) == settings
    assert "TRACKYARD_STORE" not in Settings().to_env()
    assert Settings.from_env({"TRACKYARD_STORE": ""}).store_url is None


def test_a_server_and_the_cli_use_the_store_the_url_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set for the CLI run in this process and for the server's workers alike.
    elsewhere = tmp_path / "store"
    monkeypatch.setenv("TRACKYARD_STORE", f"sqlite://{elsewhere}")
    server = start_server(tmp_path / "data", "--workers", "2")
    try:
        message = {"userId": "u-1", "event": "Stored Elsewhere", "messageId": "m-1"}
        for _ in range(2):  # the retry is a duplicate, whichever worker takes it
            response = httpx.post(f"{server.url}/v1/track", json=message, auth=(server.write_key, ""))
            assert response.status_code == 200, response.text
        (stored,) = server.events()
        assert stored["event"] == "Stored Elsewhere"
    finally:
        server.stop()
    assert (elsewhere / "trackyard.db").exists()
    assert not (tmp_path / "data" / "trackyard.db").exists()

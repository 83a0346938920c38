"""The factory: which backend the settings name, and the errors for those that do not exist."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from trackyard.config import Settings
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import check_store_url, describe_store, open_backends, store_exists


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


def test_a_nats_store_url_says_nats_holds_only_the_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_url="nats://trackyard:hunter2@nats.internal:4222")
    with pytest.raises(StoreURLError) as refused:
        open_backends(settings)
    message = str(refused.value)
    assert "TRACKYARD_LOG" in message and "sqlite:" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://broker:9092", "no log backend for the scheme 'kafka'"),
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
    "url", ["postgresql://trackyard:hunter2@db.internal/trackyard", "postgres://x:hunter2@h/d"]
)
def test_postgresql_as_the_store_url_points_to_the_state_setting(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreURLError) as refused:
        open_backends(Settings(data_dir=tmp_path, store_url=url))
    assert "--state postgresql://" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("field", "url", "said"),
    [
        ("state_url", "mysql://root:hunter2@h/db", "no state backend for the scheme 'mysql'"),
        ("state_url", "nats://u:hunter2@h:4222", "no state backend for the scheme 'nats'"),
        ("log_url", "kafka://u:hunter2@h:9092", "no log backend for the scheme 'kafka'"),
        ("state_url", "hunter2", "must be a URL"),
        ("log_url", "postgresql://u:hunter2@h:notaport/db", "not a valid PostgreSQL URL"),
    ],
)
def test_bad_state_and_log_urls_are_refused_without_echoing_them(
    tmp_path: Path, field: str, url: str, said: str
) -> None:
    settings = Settings(data_dir=tmp_path, **{field: url})  # type: ignore[arg-type]
    with pytest.raises(StoreURLError) as refused:
        check_store_url(settings)
    assert said in str(refused.value) and "hunter2" not in str(refused.value)


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


def test_the_start_up_description_of_a_postgresql_store_hides_the_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        state_url="postgresql://trackyard:hunter2@db.internal:5433/state",
        log_url="postgresql://trackyard:hunter3@log.internal/log",
    )
    described = describe_store(settings)
    assert "hunter2" not in described and "hunter3" not in described
    assert "postgresql://trackyard:***@db.internal:5433/state" in described
    assert "log: PostgreSQL at postgresql://trackyard:***@log.internal/log" in described
    assert describe_store(Settings(data_dir=tmp_path)) == f"SQLite in {tmp_path}"


def test_the_profile_stores_page_cache_is_the_size_its_variable_says(tmp_path: Path) -> None:
    env = {"TRACKYARD_DATA_DIR": str(tmp_path), "TRACKYARD_PROFILES_CACHE_SIZE": "8MiB"}
    settings = Settings.from_env(env)
    assert settings.profiles_cache_bytes == 8 * 1024 * 1024
    assert Settings.from_env(settings.to_env()) == settings  # as it travels to the consumers
    backends = open_backends(settings, writer=True)
    try:
        profiles = backends.profiles()
        # SQLite's own reading of the setting: a negative cache_size is KiB.
        assert profiles._conn.execute("PRAGMA cache_size").fetchone() == (-8192,)  # type: ignore[attr-defined]
    finally:
        backends.close()

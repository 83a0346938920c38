"""SourceRegistry: add, look up, change; duplicates refused; every change moves the version."""

from __future__ import annotations

import time

import pytest

from tests.storage.conformance.conftest import reopened
from trackyard.storage.base import NoSuchSource, SourceExists
from trackyard.storage.factory import Backends, open_backends
from trackyard.storage.secrets import verify_secret


def test_an_added_source_is_listed_and_found_by_name(backends: Backends) -> None:
    assert backends.sources.sources() == []
    web = backends.sources.add_source("web")
    app = backends.sources.add_source("app", write_key="k-app", rate_limit=50.0, secret="s3cret")
    assert web.enabled and web.rate_limit is None and web.secret_hash is None
    assert len(web.write_key) == 32 and web.write_key.isalnum()
    assert (app.write_key, app.rate_limit) == ("k-app", 50.0)
    assert app.secret_hash is not None and verify_secret("s3cret", app.secret_hash)
    assert "s3cret" not in app.secret_hash
    assert backends.sources.sources() == [web, app]
    assert backends.sources.source_by_name("app") == app
    assert backends.sources.source_by_name("nope") is None
    assert web.id != app.id


def test_a_duplicate_name_or_write_key_is_refused(backends: Backends) -> None:
    backends.sources.add_source("web", write_key="k1")
    with pytest.raises(SourceExists):
        backends.sources.add_source("web")
    with pytest.raises(SourceExists):
        backends.sources.add_source("other", write_key="k1")
    backends.sources.add_source("app", write_key="k2")
    with pytest.raises(SourceExists):
        backends.sources.rotate_source("app", "k1")
    assert [s.name for s in backends.sources.sources()] == ["web", "app"]


def test_changes_to_a_source_are_stored(backends: Backends) -> None:
    added = backends.sources.add_source("web", write_key="old")
    rotated = backends.sources.rotate_source("web", "new")
    assert rotated.write_key == "new"
    generated = backends.sources.rotate_source("web")
    assert generated.write_key not in ("old", "new") and len(generated.write_key) == 32
    assert not backends.sources.set_source_enabled("web", False).enabled
    assert backends.sources.set_source_enabled("web", True).enabled
    with_secret = backends.sources.set_source_secret("web", "hush")
    assert with_secret.secret_hash is not None and verify_secret("hush", with_secret.secret_hash)
    assert backends.sources.set_source_rate_limit("web", 10.0).rate_limit == 10.0
    final = backends.sources.set_source_rate_limit("web", None)
    assert final.rate_limit is None
    assert (final.id, final.created_at) == (added.id, added.created_at)
    assert backends.sources.source_by_name("web") == final


def test_changing_an_unknown_source_raises_no_such_source(backends: Backends) -> None:
    for change, args in (
        (backends.sources.rotate_source, ()),
        (backends.sources.set_source_enabled, (False,)),
        (backends.sources.set_source_secret, ("x",)),
        (backends.sources.set_source_rate_limit, (1.0,)),
    ):
        with pytest.raises(NoSuchSource):
            change("ghost", *args)


def test_every_change_moves_the_version(backends: Backends) -> None:
    versions = [backends.sources.sources_version()]
    backends.sources.add_source("web")
    versions.append(backends.sources.sources_version())
    backends.sources.rotate_source("web")
    versions.append(backends.sources.sources_version())
    backends.sources.set_source_enabled("web", False)
    versions.append(backends.sources.sources_version())
    backends.sources.set_source_secret("web", "s")
    versions.append(backends.sources.sources_version())
    backends.sources.set_source_rate_limit("web", 5.0)
    versions.append(backends.sources.sources_version())
    assert len(set(versions)) == len(versions)


def test_another_opening_of_the_store_sees_a_change_through_the_version(backends: Backends) -> None:
    # A server caches its sources and reloads them when the version moves: a change made by
    # the CLI (another opening of the same store, or another node) must move the server's
    # version too, within a second (PostgreSQL's is re-read in the background).
    cli = open_backends(backends.settings, writer=False)
    try:
        before = backends.sources.sources_version()
        cli.sources.add_source("web")
        deadline = time.monotonic() + 1.0
        while backends.sources.sources_version() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backends.sources.sources_version() != before
        assert [s.name for s in backends.sources.sources()] == ["web"]
    finally:
        cli.close()


def test_sources_survive_a_reopen(backends: Backends) -> None:
    web = backends.sources.add_source("web", rate_limit=2.0, secret="s")
    with reopened(backends, writer=False) as again:
        assert again.sources.sources() == [web]

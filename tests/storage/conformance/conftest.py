"""The backend conformance suite: one set of tests that every backend must pass.

Each test here is written only against the protocols in :mod:`trackyard.storage.base`
and the profile store protocol, through the ``Backends`` the factory opens. A backend
joins the suite by adding its name to ``BACKENDS`` and a branch to ``_settings``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.storage.factory import Backends, open_backends

#: The backends the suite runs against. PostgreSQL and NATS JetStream (planned) will join
#: here, each with its URL in ``_settings``, skipped when its server is not available.
BACKENDS = ["sqlite"]


def _settings(name: str, data_dir: Path) -> Settings:
    if name == "sqlite":
        return Settings(data_dir=data_dir)
    raise AssertionError(f"no settings for backend {name!r}")


def reopen(backends: Backends, *, writer: bool = True) -> Backends:
    """Open the same backends again (after ``backends.close()``), as a restarted process would."""
    return open_backends(backends.settings, writer=writer)


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    """Open ``Backends`` (writer=True) on a fresh, empty store; closed after the test."""
    opened = open_backends(_settings(request.param, tmp_path / "data"), writer=True)
    try:
        yield opened
    finally:
        opened.close()

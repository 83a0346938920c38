"""The backends every conformance test runs against: each protocol's tests run once per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trackyard.config import Settings
from trackyard.storage.factory import Backends, open_backends

#: Backend names; PostgreSQL and JetStream join here when they exist.
BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(Settings(data_dir=tmp_path / request.param), writer=True)
    yield opened
    opened.close()

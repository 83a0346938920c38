"""A server with the console on (an admin token), and a signed-in HTTP client for it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import Server, start_server

TOKEN = "console-test-token-0123456789"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # No warehouse loader: the flood tests send 2,500 event names, which would be 2,500 tables
    # for it to create before the server could stop (the console reads only the log).
    srv = start_server(
        tmp_path_factory.mktemp("console") / "data", "--admin-token", TOKEN, "--no-warehouse", source="web"
    )
    yield srv
    srv.stop()


@contextmanager
def signed_in(server: Server) -> Iterator[httpx.Client]:
    """A client holding a session cookie, as a browser would after signing in."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        answer = client.post("/console/sign-in", data={"token": TOKEN, "next": "/console/sources"})
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, page
    return found.group(1)

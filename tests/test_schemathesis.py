"""Schemathesis against the Segment HTTP Tracking API spec in the seeds, on a real server.

The spec's servers are ``https://api.segment.io/v1``; here the base URL is the server's own
plus ``/v1``, with the write key as Basic auth. Every generated request must get an answer the
spec documents (200, 400 or 401 with a JSON body of the documented shape), never a 5xx, and
auth must be enforced (``ignored_auth``).

Spec-versus-Segment differences that are deliberate (the spec lets an identify call omit
both ids; Segment and trackyard refuse it with 400; trackyard accepts fields the spec does not
list) are why ``positive_data_acceptance`` and ``negative_data_rejection`` are not run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Server, start_server

SPEC = Path(__file__).resolve().parent / "fixtures" / "seeds" / "segment-http-tracking-api.openapi.yml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]


@pytest.fixture(scope="module")
def segment_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("schemathesis") / "data")
    yield srv
    srv.stop()


def _spec() -> OpenApiSchema:
    return schemathesis.openapi.from_path(SPEC)


def test_the_segment_spec_holds_against_a_real_server(segment_server: Server) -> None:
    schema = _spec()
    schema.config.update(base_url=f"{segment_server.url}/v1", basic_auth=(segment_server.write_key, ""))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    assert {op.path for op in operations} == {
        "/identify", "/track", "/page", "/screen", "/group", "/alias", "/batch",
    }  # fmt: skip
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Case[Any]) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=CHECKS)

        check()
    assert calls >= 7 * 10

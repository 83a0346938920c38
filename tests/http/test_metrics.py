"""``GET /metrics`` from real servers: values checked against what was sent, across two workers.

The scrape is parsed with prometheus-client's own parser. Each request goes on a fresh
connection, so the kernel hands them to either worker; the test goes on until both
workers have counted (each writes its own files in the metrics directory, named by pid,
which the server makes under the ``TMPDIR`` the test gives it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, cli, start_server
from tests.destinations.conftest import Answer, Receiver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_COUNTER_FILE = re.compile(r"counter_(\d+)\.db")


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Connection": "close"} | ({"Authorization": f"Bearer {token}"} if token else {})
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


#: The metrics consumer reads the store gauges every second in these tests (5 s by default).
FAST_GAUGES = {"TRACKYARD_METRICS_INTERVAL_SECONDS": "1"}


def scrape_until(
    url: str, done: Callable[[Samples], bool], token: str | None = None, timeout: float = 30.0
) -> Samples:
    """Scrape until ``done``: the store gauges are as old as the metrics consumer's last reading."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url, token)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, samples
        time.sleep(0.05)


@contextmanager
def gauges_reader(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``trackyard consume metrics`` on a ``serve --role ingest`` node's data dir: that server
    runs no consumers, so this is what reads the store gauges its scrapes serve (with its own
    settings: the retention policy the figures are measured against is the consumers')."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trackyard", "consume", "metrics", "--data-dir", str(data_dir)],
        env={**os.environ, **FAST_GAUGES, "TRACKYARD_LOG_LEVEL": "warning", **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def counting_pids(tmp: Path) -> set[int]:
    """The workers that have counted something: one counter file each."""
    return {
        int(m.group(1)) for path in tmp.glob("trackyard-metrics-*/*") if (m := _COUNTER_FILE.match(path.name))
    }


def post(url: str, path: str, body: object, **kwargs: object) -> httpx.Response:
    """On a connection of its own, so that either worker may answer it."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = start_server(tmp_path / "data", "--workers", "2", "--role", "ingest", env={"TMPDIR": str(tmp)})
    yield server, tmp
    server.stop()


def test_counts_sum_over_two_workers_and_match_what_was_sent(two_workers: tuple[Server, Path]) -> None:
    server, tmp = two_workers
    url, key = server.url, server.write_key
    # Segment single calls until both workers have answered some (at least 20 in all).
    sent = 0
    deadline = time.monotonic() + 60
    while sent < 20 or len(counting_pids(tmp)) < 2:
        assert time.monotonic() < deadline, f"one worker answered all {sent} requests"
        track = {"userId": "u", "event": "E", "messageId": f"m-{sent}"}
        assert post(url, "/v1/track", track, auth=(key, "")).status_code == 200
        sent += 1
    # The first five again: acknowledged, and deduplicated.
    for i in range(5):
        assert post(
            url, "/v1/track", {"userId": "u", "event": "E", "messageId": f"m-{i}"}, auth=(key, "")
        ).is_success
    # An invalid event (no user id), and three requests with an unknown key.
    assert post(url, "/v1/track", {"event": "E"}, auth=(key, "")).status_code == 400
    for _ in range(3):
        assert post(url, "/v1/track", {"userId": "u", "event": "E"}, auth=("nope", "")).status_code == 401
    # The other formats, once each.
    koala = {
        "email": "a@example.com",
        "events": [{"type": "track", "event": "V", "message_id": f"k-{i}"} for i in (1, 2)],
    }
    assert post(url, f"/web/projects/{key}/batch", koala).status_code == 200
    vitally = {"userId": "u", "event": "Opened", "messageId": "v-1", "properties": {}}
    assert (
        post(url, "/analytics/v1/track", vitally, headers={"Authorization": f"Basic {key}"}).status_code
        == 200
    )
    bloomreach = {"customer_ids": {"registered": "u"}, "event_type": "purchase", "properties": {}}
    answer = post(
        url,
        f"/track/v2/projects/{key}/customers/events",
        bloomreach,
        headers={"Authorization": f"Token {key}"},
    )
    assert answer.status_code == 200

    rejects = Counter(reject["code"] for reject in server.rejects() if reject["source_id"])
    assert sum(rejects.values()) == 1
    # The unknown key's refusals are kept without a source, at most once a worker (10 s apart).
    strangers = [reject["code"] for reject in server.rejects() if not reject["source_id"]]
    assert 1 <= len(strangers) <= 2 and set(strangers) == {"invalid_write_key"}
    status = {
        row["name"]: row
        for row in map(
            msgspec.json.decode,
            cli("consumers", "status", "--data-dir", str(server.data_dir), "--json").split(),
        )
    }
    stored = len(server.events())
    assert stored == sent + 4
    with gauges_reader(server.data_dir):
        scrape_until(url, lambda samples: value(samples, "trackyard_log_head_seq") == stored)
        # Several scrapes, each answered by either worker, all with the whole sum.
        samples_of_four = [scrape(url) for _ in range(4)]
    for samples in samples_of_four:
        stored_by = {
            fmt: value(samples, "trackyard_events_stored_total", source="test", format=fmt)
            for fmt in ("segment", "koala", "vitally", "bloomreach")
        }
        assert stored_by == {"segment": sent, "koala": 2, "vitally": 1, "bloomreach": 1}
        assert value(samples, "trackyard_events_deduplicated_total", source="test", format="segment") == 5
        assert (
            value(samples, "trackyard_events_received_total", source="test", format="segment") == sent + 5 + 1
        )
        for code, n in rejects.items():
            assert (
                value(
                    samples, "trackyard_events_rejected_total", source="test", format="segment", reason=code
                )
                == n
            )
        requests = "trackyard_http_requests_total"
        assert value(samples, requests, route="/v1/track", format="segment", status="200") == sent + 5
        assert value(samples, requests, route="/v1/track", format="segment", status="400") == 1
        assert value(samples, requests, route="/v1/track", format="segment", status="401") == 3
        # A route with a key in its path is labelled by its template, never by the key.
        assert value(samples, requests, route="/web/projects/{key}/batch", format="koala", status="200") == 1
        assert not any(key in label for _, labels in samples for _, label in labels)
        assert (
            value(samples, "trackyard_ingest_refusals_total", format="segment", reason="invalid_write_key")
            == 3
        )
        assert value(samples, "trackyard_http_request_duration_seconds_count", route="/v1/track") == sent + 9
        assert value(samples, "trackyard_commit_duration_seconds_count") >= sent + 9
        # Only the scrape itself is in flight.
        assert value(samples, "trackyard_http_requests_in_flight") == 1
        assert value(samples, "trackyard_store_size_bytes") > 0
        # The lag is the one `trackyard consumers status` prints (no consumer runs here).
        assert (
            value(samples, "trackyard_consumer_lag_events", consumer="profiles")
            == status["profiles"]["lag"]
            == stored
        )
        assert value(samples, "trackyard_consumer_lag_seconds", consumer="profiles") > 0
        assert value(samples, "trackyard_consumer_running", consumer="profiles") == 0
    assert len(counting_pids(tmp)) == 2


def test_metrics_token_no_metrics_and_a_running_consumer(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--metrics-token", "s3cret", env=FAST_GAUGES)
    try:
        refused = httpx.get(f"{server.url}/metrics")
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_metrics_token"
        assert (
            httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert httpx.post(
            f"{server.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(server.write_key, "")
        ).is_success
        # Under --role all the profiles consumer runs and catches up: its lag comes down to 0.
        samples = scrape_until(
            server.url,
            lambda samples: (
                value(samples, "trackyard_log_head_seq") == 1
                and value(samples, "trackyard_consumer_lag_events", consumer="profiles") == 0
            ),
            token="s3cret",
        )
        assert value(samples, "trackyard_consumer_running", consumer="profiles") == 1
        assert value(samples, "trackyard_consumer_lag_seconds", consumer="profiles") == 0
        assert value(samples, "trackyard_log_head_seq") == 1
    finally:
        server.stop()
    server = start_server(tmp_path / "off", "--no-metrics")
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 404
        assert httpx.post(
            f"{server.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(server.write_key, "")
        ).is_success
    finally:
        server.stop()


def test_rate_limited_requests_count_as_overload_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("sources", "add", "slow", "--rate-limit", "1", "--data-dir", str(data))
    server = start_server(data)
    try:
        key = next(
            s["write_key"]
            for s in map(
                msgspec.json.decode, cli("sources", "list", "--json", "--data-dir", str(data)).split()
            )
            if s["name"] == "slow"
        )
        with httpx.Client(base_url=server.url, auth=(key, "")) as client:
            statuses = Counter(
                client.post("/v1/track", json={"userId": "u", "event": "E"}).status_code for _ in range(10)
            )
        assert statuses[429] > 0
        samples = scrape(server.url)
        assert (
            value(samples, "trackyard_overload_refusals_total", reason="rate_limited", status="429")
            == statuses[429]
        )
        assert (
            value(samples, "trackyard_ingest_refusals_total", format="segment", reason="rate_limited")
            == statuses[429]
        )
        assert (
            value(samples, "trackyard_http_requests_total", route="/v1/track", format="segment", status="429")
            == statuses[429]
        )
    finally:
        server.stop()


def test_destinations_are_read_from_the_registry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, "--role", "ingest")
    try:
        hook = ["add", "hook", "--format", "webhook", "--url", "http://127.0.0.1:9/none", "--data-dir"]
        cli("destinations", *hook, str(data))
        for _ in range(3):
            assert httpx.post(
                f"{server.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(server.write_key, "")
            ).is_success
        with gauges_reader(data):
            samples = scrape_until(
                server.url,
                lambda samples: (
                    value(samples, "trackyard_consumer_lag_events", consumer="destination:hook") == 3
                ),
            )
        assert value(samples, "trackyard_destination_enabled", destination="hook") == 1
        assert (
            value(samples, "trackyard_destination_events_total", destination="hook", outcome="delivered") == 0
        )
        assert value(samples, "trackyard_consumer_lag_events", consumer="destination:hook") == 3
        assert value(samples, "trackyard_consumer_dead_letters_total", consumer="destination:hook") == 0
    finally:
        server.stop()


def test_deliveries_by_status_class_retries_and_dead_letters(tmp_path: Path) -> None:
    """A real receiver answers 500 then 200, then 400; the destination's own process records
    it in the registry, and the server's scrape reads it there."""
    data = tmp_path / "data"
    receiver = Receiver()
    receiver.answer(Answer(500), Answer(200), Answer(400))
    hook = ["add", "hook", "--format", "webhook", "--url", receiver.url, "--batch-size", "1"]
    cli("destinations", *hook, "--data-dir", str(data))
    fast = {
        "TRACKYARD_DESTINATION_BACKOFF_SECONDS": "0.01",
        "TRACKYARD_DESTINATION_BACKOFF_CAP_SECONDS": "0.05",
    }
    server = start_server(data, env=fast | FAST_GAUGES)
    try:
        for i in range(3):
            track = {"userId": "u", "event": "E", "messageId": f"m{i}"}
            assert httpx.post(f"{server.url}/v1/track", json=track, auth=(server.write_key, "")).is_success
        events = "trackyard_destination_events_total"
        samples = scrape_until(
            server.url,
            lambda samples: (
                value(samples, events, destination="hook", outcome="delivered") == 2
                and value(samples, events, destination="hook", outcome="dead_lettered") == 1
            ),
        )
        requests = "trackyard_destination_requests_total"
        assert value(samples, requests, destination="hook", status_class="2xx") == 2
        assert value(samples, requests, destination="hook", status_class="4xx") == 1
        assert value(samples, requests, destination="hook", status_class="5xx") == 1
        assert (
            value(
                samples, "trackyard_destination_request_events_total", destination="hook", status_class="2xx"
            )
            == 2
        )
        assert value(samples, "trackyard_destination_retries_total", destination="hook") == 1
        assert value(samples, events, destination="hook", outcome="dead_lettered") == 1
        assert value(samples, events, destination="hook", outcome="skipped") == 0
        assert value(samples, "trackyard_destination_last_error_timestamp_seconds", destination="hook") > 0
    finally:
        server.stop()
        receiver.close()


def test_a_killed_worker_keeps_its_counts_and_drops_its_live_gauge(two_workers: tuple[Server, Path]) -> None:
    server, tmp = two_workers
    assert server.process is not None
    sent = 0
    deadline = time.monotonic() + 60
    while len(counting_pids(tmp)) < 2:
        assert time.monotonic() < deadline, f"one worker answered all {sent} requests"
        assert post(
            server.url, "/v1/track", {"userId": "u", "event": "E"}, auth=(server.write_key, "")
        ).is_success
        sent += 1
    victim = min(counting_pids(tmp))
    live = next(tmp.glob(f"trackyard-metrics-*/gauge_livesum_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    # uvicorn's supervisor replaces the worker and drops the dead one's live gauge file.
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    while live.exists() or len(children.read_text().split()) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.05)
    for _ in range(4):
        samples = scrape(server.url)
        assert value(samples, "trackyard_events_stored_total", source="test", format="segment") == sent
        assert value(samples, "trackyard_http_requests_in_flight") == 1


def test_every_metric_is_documented() -> None:
    repo = Path(__file__).resolve().parents[2]
    names = {
        name
        for module in (repo / "src/trackyard/metrics").glob("*.py")
        for name in re.findall(r'"(trackyard_[a-z_]+)"', module.read_text())
    }
    assert len(names) >= 19
    documented = set(re.findall(r"`(trackyard_[a-z_]+)`", (repo / "docs/metrics.md").read_text()))
    # Counters are named without their _total in the code.
    assert {name for name in names if name not in documented and f"{name}_total" not in documented} == set()

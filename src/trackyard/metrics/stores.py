"""Gauges and counters read from the stores: what other processes own.

Consumers and destinations run in processes of their own (``trackyard.consumers``), often
not under this server at all (``trackyard consume`` beside ``serve --role ingest``), so
their progress is read where they keep it: the cursors, the dead letters and the
destination registry, through the same code ``trackyard consumers status`` runs. The
``metrics`` consumer reads them every few seconds, never a scrape (:mod:`trackyard.metrics.gauges`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from trackyard.config import Settings
from trackyard.consumers.status import Positions, consumer_statuses
from trackyard.event import parse_timestamp
from trackyard.retention.policy import Policy, retention_status
from trackyard.storage.base import EventLog
from trackyard.storage.factory import (
    Backends,
    destinations_exist,
    maintenance_available,
    open_destinations,
    open_maintenance,
    store_bytes,
)

log = logging.getLogger("trackyard.metrics")


class _Received(msgspec.Struct):
    receivedAt: str = ""


Family = GaugeMetricFamily | CounterMetricFamily
#: The families with one sample a consumer, and a destination: key, (kind, name, help).
_PER_CONSUMER: dict[str, tuple[type[Family], str, str]] = {
    "lag": (
        GaugeMetricFamily,
        "trackyard_consumer_lag_events",
        "Events in the log a consumer has not handled yet.",
    ),
    "lag_seconds": (
        GaugeMetricFamily,
        "trackyard_consumer_lag_seconds",
        "How long the oldest event a consumer has not handled has been in the log (0 when caught up).",
    ),
    "running": (
        GaugeMetricFamily,
        "trackyard_consumer_running",
        "1 while a process holds the consumer's lease.",
    ),
    "dead": (
        CounterMetricFamily,
        "trackyard_consumer_dead_letters",
        "Events a consumer gave up on after its retries and set aside.",
    ),
}
_PER_DESTINATION: dict[str, tuple[type[Family], str, str]] = {
    "retries": (
        CounterMetricFamily,
        "trackyard_destination_retries",
        "Attempts after a request's first, by destination.",
    ),
    "last_error": (
        GaugeMetricFamily,
        "trackyard_destination_last_error_timestamp_seconds",
        "When a destination last failed (retried or dead-lettered), as a Unix time.",
    ),
    "enabled": (GaugeMetricFamily, "trackyard_destination_enabled", "1 while a destination is enabled."),
}
#: By destination and a second label: what became of its events, and of its requests.
_EVENTS = (
    "trackyard_destination_events",
    "Events by destination and outcome: delivered, dead_lettered, skipped.",
)
_REQUESTS = (
    "trackyard_destination_requests",
    "Requests sent, by destination and status class (2xx, 3xx, 4xx, 5xx, timeout, connection, error).",
)
_REQUEST_EVENTS = (
    "trackyard_destination_request_events",
    "Events carried by requests, by destination and status class (a retried event counts each time).",
)


def _families(specs: dict[str, tuple[type[Family], str, str]], label: str) -> dict[str, Family]:
    return {key: kind(name, doc, labels=[label]) for key, (kind, name, doc) in specs.items()}


def _age_seconds(events: EventLog, cursor: int, now: float) -> float:
    """How long the oldest event past ``cursor`` has waited: 0 when there is none."""
    waiting = events.read_events(after=cursor, limit=1)
    if not waiting:
        return 0.0
    try:
        received_us = parse_timestamp(msgspec.json.decode(waiting[0].body, type=_Received).receivedAt)
    except (msgspec.DecodeError, ValueError):
        return 0.0
    return max(now - received_us / 1_000_000, 0.0)


class StoreCollector(Collector):
    """The store's size, each consumer's lag in events and seconds, dead letters, destinations."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self._settings = settings
        self._backends = backends

    def collect(self) -> Iterator[Family]:
        stamp = GaugeMetricFamily(
            "trackyard_store_gauges_timestamp_seconds",
            "When the metrics consumer read the store gauges of this scrape (Unix time).",
        )
        stamp.add_metric([], time.time())
        yield stamp
        size = GaugeMetricFamily("trackyard_store_size_bytes", "The event store's size on disk.")
        size.add_metric([], store_bytes(self._settings))
        yield size
        # Asked twice (for the lag and for retention's holds); running consumers from their
        # mirrors, so that this process never opens the loader's DuckDB file.
        positions = Positions(self._backends, mirrors_while_running=True)
        yield from self._consumers(self._backends, positions)
        if maintenance_available(self._settings):
            yield from self._retention(self._backends, positions)

    def _retention(self, backends: Backends, positions: Positions) -> Iterator[Family]:
        """``trackyard store status``'s figures, read the same way."""
        maintenance = open_maintenance(self._settings)
        try:
            now_ms = int(time.time() * 1000)
            policy = Policy.from_settings(self._settings)
            status = retention_status(backends, maintenance, policy, now_ms, positions)
        finally:
            maintenance.close()
        events = GaugeMetricFamily("trackyard_store_events", "Events kept in the log.")
        events.add_metric([], status.extent.events)
        yield events
        disk = GaugeMetricFamily(
            "trackyard_store_disk_bytes", "Bytes on disk by part of the store.", labels=["part"]
        )
        for part, size in status.disk_usage.items():
            disk.add_metric([part], size)
        yield disk
        oldest = GaugeMetricFamily(
            "trackyard_store_oldest_event_age_seconds",
            "How long ago the oldest event kept was received (0 when the log is empty).",
        )
        received_ms = status.extent.oldest_received_ms
        oldest.add_metric([], 0 if received_ms is None else max(now_ms - received_ms, 0) / 1000)
        yield oldest
        held = GaugeMetricFamily(
            "trackyard_retention_held_back",
            "1 while a consumer keeps events retention would drop (it has not read them yet).",
            labels=["consumer"],
        )
        holding = {hold.consumer for hold in status.held_by}
        for hold in status.holds:
            held.add_metric([hold.consumer], 1 if hold.consumer in holding else 0)
        yield held

    def _consumers(self, backends: Backends, positions: Positions) -> Iterator[Family]:
        now = time.time()
        head = GaugeMetricFamily("trackyard_log_head_seq", "The seq of the newest event in the log.")
        head.add_metric([], backends.log.head_seq())
        yield head
        per = _families(_PER_CONSUMER, "consumer")
        lag, lag_seconds, running, dead = per["lag"], per["lag_seconds"], per["running"], per["dead"]
        for status in consumer_statuses(backends, self._settings, positions):
            running.add_metric([status.name], 1 if status.running else 0)
            dead.add_metric([status.name], status.dead_letters)
            if status.cursor is None:  # its store cannot be read now (the scrape says so below)
                log.debug("metrics: %s: %s", status.name, status.error)
                continue
            lag.add_metric([status.name], status.head - min(status.cursor, status.head))
            lag_seconds.add_metric([status.name], _age_seconds(backends.log, status.cursor, now))
        if destinations_exist(self._settings):
            yield from self._destinations(backends, lag, lag_seconds, dead, now)
        yield from per.values()

    def _destinations(
        self,
        backends: Backends,
        lag: Family,
        lag_seconds: Family,
        dead: Family,
        now: float,
    ) -> Iterator[Family]:
        """Each destination is a consumer of its own (``destination:NAME``) besides its counts."""
        per = _families(_PER_DESTINATION, "destination")
        retries, last_error, enabled = per["retries"], per["last_error"], per["enabled"]
        events = CounterMetricFamily(*_EVENTS, labels=["destination", "outcome"])
        requests = CounterMetricFamily(*_REQUESTS, labels=["destination", "status_class"])
        request_events = CounterMetricFamily(*_REQUEST_EVENTS, labels=["destination", "status_class"])
        head = backends.log.head_seq()
        cursors, letters = backends.cursors(), backends.dead_letters()
        registry = open_destinations(self._settings)
        try:
            for destination in registry.destinations():
                name, consumer = destination.name, destination.consumer
                count, _, error_at_ms = registry.status(name)
                buried = letters.count(consumer)
                events.add_metric([name, "delivered"], count)
                events.add_metric([name, "dead_lettered"], buried)
                events.add_metric([name, "skipped"], sum(registry.skip_counts(name).values()))
                counts = registry.request_counts(name)
                for status_class, counted in counts.items():
                    requests.add_metric([name, status_class], counted.requests)
                    request_events.add_metric([name, status_class], counted.events)
                retries.add_metric([name], sum(c.retries for c in counts.values()))
                enabled.add_metric([name], 1 if destination.enabled else 0)
                if error_at_ms is not None:
                    last_error.add_metric([name], error_at_ms / 1000)
                cursor = cursors.get(consumer)
                lag.add_metric([consumer], max(head - cursor, 0))
                lag_seconds.add_metric([consumer], _age_seconds(backends.log, cursor, now))
                dead.add_metric([consumer], buried)
        finally:
            registry.close()
        yield from (events, requests, request_events, *per.values())

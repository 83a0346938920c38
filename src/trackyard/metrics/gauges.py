"""The store gauges' cache: a file the ``metrics`` consumer writes and every scrape reads.

Reading the stores' gauges (consumers' positions and lag, sizes, retention, destinations)
takes from milliseconds to seconds and competes with ingest for the GIL and the store, so
no HTTP worker does it. The ``metrics`` consumer (:mod:`trackyard.metrics.consumer`) reads
them in a process of its own every ``metrics_interval_seconds`` and writes them, already
in Prometheus's text format, to ``DATA_DIR/metrics/gauges.prom`` (a temporary file renamed
over it, so a reader sees the old text or the new, never half). A scrape appends the file's
bytes to the workers' counters: a ``stat``, and a read only when the file has changed.
With PostgreSQL state the reading is also written to a row of the state database, which
the collectors (often on other machines than the consumers) fetch at most once an interval.

The file is node_exporter's textfile format too, so a node that runs only consumers (it has
no port) can be scraped through node_exporter's textfile collector pointed at that folder.
A copy older than :func:`stale_after` is not served: its writer has stopped, and old lags
would look current (``trackyard_store_gauges_timestamp_seconds`` is then absent, an alert).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest

from trackyard.config import Settings
from trackyard.metrics.stores import StoreCollector
from trackyard.storage.factory import Backends, shared_gauges

if TYPE_CHECKING:
    from trackyard.storage.postgres.gauges import SharedGauges

log = logging.getLogger("trackyard.metrics")

#: node_exporter's textfile collector reads ``*.prom`` files of a folder.
_FILE: Final = Path("metrics") / "gauges.prom"
#: However short the interval, a copy is served this long (a busy machine delays a reading).
_STALE_MIN_SECONDS: Final = 30


def gauges_path(settings: Settings) -> Path:
    return settings.data_dir / _FILE


def stale_after(settings: Settings) -> float:
    """Seconds after which a written copy is no longer served: several missed readings."""
    return float(max(_STALE_MIN_SECONDS, 6 * settings.metrics_interval_seconds))


def read_store_gauges(settings: Settings, backends: Backends) -> bytes:
    """The store gauges now, in the text format, with the time they were read."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(settings, backends))
    return generate_latest(registry)


def write_store_gauges(settings: Settings, text: bytes, shared: SharedGauges | None) -> None:
    """Replace the file atomically (readers never see a half-written copy), and the shared
    copy of PostgreSQL state."""
    path = gauges_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(text)
    os.replace(partial, path)
    if shared is not None:
        shared.write(text, time.time())


class CachedGauges:
    """What a worker's scrapes append: the last reading, if it is fresh.

    With SQLite state, the data dir's file: a ``stat`` each scrape, a read when it changed.
    With PostgreSQL state, the database's row (the reader may run on another machine),
    fetched at most once an interval; a failed fetch keeps the copy in hand.
    """

    def __init__(self, settings: Settings) -> None:
        self._path = gauges_path(settings)
        self._stale = stale_after(settings)
        self._interval = float(settings.metrics_interval_seconds)
        self._shared = shared_gauges(settings)
        self._lock = threading.Lock()  # scrapes run in the thread pool
        self._seen: tuple[int, int, int] | None = None
        self._text = b""
        self._written_at = 0.0
        self._fetched_at = -self._interval

    def text(self) -> bytes:
        with self._lock:
            if self._shared is not None:
                self._fetch(self._shared)
            else:
                self._read_file()
            return self._text if time.time() - self._written_at <= self._stale else b""

    def _read_file(self) -> None:
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            self._text, self._written_at = b"", 0.0
            return
        version = (found.st_ino, found.st_mtime_ns, found.st_size)
        if version != self._seen:
            try:
                self._text = self._path.read_bytes()
            except FileNotFoundError:
                return
            self._seen = version
        self._written_at = found.st_mtime

    def _fetch(self, shared: SharedGauges) -> None:
        now = time.monotonic()
        if now - self._fetched_at < self._interval:
            return
        self._fetched_at = now
        try:
            found = shared.read()
        except Exception as problem:  # unreachable, or no reading written yet (no table)
            log.debug("metrics: the store gauges' shared copy: %s", problem)
            return
        if found is not None:
            self._text, self._written_at = found

"""Server settings: one frozen object, built from CLI options or ``TRACKYARD_*`` variables.

Worker processes are started by uvicorn from an import string, so the settings travel to
them through the environment (:meth:`Settings.to_env` / :meth:`Settings.from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Literal

from trackyard.units import parse_duration, parse_size

Durability = Literal["full", "process"]
LogFormat = Literal["text", "json"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8088
DEFAULT_DATA_DIR: Final = "./trackyard-data"

#: Segment's documented limits (reference segment.md 1.5), in bytes of decoded JSON.
#: "KB" is 1,024 bytes, as in analytics-python's ``MAX_MSG_SIZE = 32 << 10``.
MAX_EVENT_BYTES: Final = 32 * 1024
MAX_REQUEST_BYTES: Final = 500 * 1024
MAX_BATCH_EVENTS: Final = 2500


#: Settings whose variable is not ``TRACKYARD_`` + the field's name in capitals.
_ENV_NAMES: Final = {
    "store_url": "TRACKYARD_STORE",
    "warehouse_url": "TRACKYARD_WAREHOUSE",
    "log_url": "TRACKYARD_LOG",
    "state_url": "TRACKYARD_STATE",
    "retention_seconds": "TRACKYARD_RETENTION",
    "retention_bytes": "TRACKYARD_RETENTION_SIZE",
    "profiles_cache_bytes": "TRACKYARD_PROFILES_CACHE_SIZE",
    "rejects_retention_seconds": "TRACKYARD_REJECTS_RETENTION",
    "dead_letters_retention_seconds": "TRACKYARD_DEAD_LETTERS_RETENTION",
}
#: Settings that are text, where an empty variable means unset.
_OPTIONAL_TEXT: Final = ("admin_token", "metrics_token", "store_url", "warehouse_url", "log_url", "state_url")
#: Settings written as durations (``30d``) or sizes (``50GB``) in the environment (units.py).
_DURATIONS: Final = ("retention_seconds", "rejects_retention_seconds", "dead_letters_retention_seconds")
_SIZES: Final = ("retention_bytes", "profiles_cache_bytes")


def env_name(field: str) -> str:
    return _ENV_NAMES.get(field, f"TRACKYARD_{field.upper()}")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    #: Where the embedded SQLite files are, as a URL (``TRACKYARD_STORE``): ``None`` is the
    #: data dir; ``storage/factory.py`` reads it, with ``state_url`` and ``log_url`` below.
    store_url: str | None = None
    #: Where the state is kept (``TRACKYARD_STATE``): sources and their secrets, the dedup
    #: index, cursors, leases, rejects, dead letters, destinations and profiles. ``None`` is
    #: SQLite in the data dir; ``postgresql://...`` is PostgreSQL (docs/deployment.md).
    state_url: str | None = None
    #: Where the event log is (``TRACKYARD_LOG``): ``None`` keeps it in the state backend;
    #: ``postgresql://...`` or ``nats://host:port[,host:port...]`` names one of its own.
    log_url: str | None = None
    #: The warehouse the ``warehouse`` consumer loads (``TRACKYARD_WAREHOUSE``): ``None`` is the
    #: embedded DuckDB file in the data dir, ``duckdb:///PATH`` or ``postgresql://...`` another,
    #: ``off`` runs no loader under ``serve`` (docs/warehouse.md).
    warehouse_url: str | None = None
    #: ``full``: an acknowledged event is durable on disk (survives a power loss).
    #: ``process``: it survives a crash of trackyard, not of the machine; faster.
    #: Each backend maps the two modes to its own means (SQLite: ``synchronous`` pragmas).
    durability: Durability = "full"
    #: How long a messageId is remembered per source; duplicates inside it are stored once.
    dedup_window_seconds: int = 24 * 3600
    #: Recent dedup keys held in memory (about 100 bytes each) before they are written to disk.
    dedup_memory_keys: int = 262_144
    #: ... and at most this many seconds (0: until memory is full): the log rows whose keys
    #: are in memory only stay uncompacted, so the keys go to disk within seconds.
    dedup_flush_seconds: int = 2
    #: Events waiting for the writer beyond which requests get 429 instead of queueing.
    max_pending_events: int = 50_000
    #: Largest number of events one group commit writes.
    max_commit_events: int = 5_000
    max_event_bytes: int = MAX_EVENT_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_batch_events: int = MAX_BATCH_EVENTS
    #: Body bytes of the requests being served at once (per worker) beyond which new ones
    #: get 429 at once, before their bodies are read: bodies are what fills memory under
    #: overload. Each request counts as its declared Content-Length, at least
    #: ``max_event_bytes`` and at most ``max_request_bytes`` (the most any body is read to);
    #: a compressed body, or one of undeclared length, counts as ``max_request_bytes``.
    #: The default holds 256 small requests (an SDK's burst of batches) or 16 full batches;
    #: decoding multiplies what a body holds in memory several times over.
    max_in_flight_bytes: int = 256 * MAX_EVENT_BYTES
    #: Seconds a request head (request line and headers) may take to arrive, and its size.
    header_timeout_seconds: int = 10
    max_head_bytes: int = 64 * 1024
    #: Seconds a request body may take to arrive in full; past it the answer is 408.
    body_timeout_seconds: int = 30
    #: Seconds between the server log's traffic summaries (while there is traffic); 0 turns them off.
    traffic_summary_seconds: int = 10
    #: Retention of the log (docs/storage.md#retention): events older than this (0: keep
    #: forever, the default) or past this many bytes of log (0: no limit) are dropped, in
    #: whole compacted blocks, once every enabled consumer has read them.
    retention_seconds: int = 0
    retention_bytes: int = 0
    #: Drop by age and size even what a consumer has not read yet (the operator said so).
    retention_ignore_consumers: bool = False
    #: Rejects are kept this long (30 days); dead letters forever (0) unless set.
    rejects_retention_seconds: int = 30 * 86_400
    dead_letters_retention_seconds: int = 0
    #: Seconds between the retention consumer's passes (compaction runs in between).
    retention_interval_seconds: int = 60
    #: Seqs per partition of a PostgreSQL log: the unit retention drops there (each new
    #: partition takes the value of the node that creates it).
    log_partition_events: int = 1_000_000
    #: SQLite's page cache of the embedded profile store (``profiles.db``), in the profile
    #: consumer's process. 8 MiB: 64 MiB took 63 MB more memory and was no faster per
    #: event (the pages it misses come from the OS's cache; docs/performance.md, memory).
    profiles_cache_bytes: int = 8 * 1024 * 1024
    #: Bearer token for the read and admin API (profiles, accounts); ``None`` turns that API off.
    admin_token: str | None = None
    #: ``GET /metrics`` and the counting behind it (docs/metrics.md); off, requests count nothing.
    metrics: bool = True
    #: Bearer token ``GET /metrics`` asks for; ``None`` leaves it open.
    metrics_token: str | None = None
    #: Seconds between the ``metrics`` consumer's readings of the store gauges (lag, sizes,
    #: destinations), which ``/metrics`` serves from a file (trackyard.metrics.gauges).
    metrics_interval_seconds: int = 10
    #: A line per request on the ``trackyard.access`` logger, at INFO.
    access_log: bool = False
    #: ``text`` or ``json`` (a JSON object a line) for every log line.
    log_format: LogFormat = "text"

    def to_env(self) -> dict[str, str]:
        return {
            env_name(f.name): str(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is None:
                continue
            if f.name == "data_dir":
                values[f.name] = Path(raw)
            elif f.name in _OPTIONAL_TEXT:
                values[f.name] = raw or None
            elif f.name in _DURATIONS:
                values[f.name] = _parsed(f.name, raw, parse_duration)
            elif f.name in _SIZES:
                values[f.name] = _parsed(f.name, raw, parse_size)
            elif f.name in ("metrics", "access_log", "retention_ignore_consumers"):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif f.name == "log_format":
                if raw not in ("text", "json"):
                    raise ValueError(f"TRACKYARD_LOG_FORMAT must be 'text' or 'json', not {raw!r}")
                values[f.name] = raw
            elif f.name == "durability":
                if raw not in ("full", "process"):
                    raise ValueError(f"TRACKYARD_DURABILITY must be 'full' or 'process', not {raw!r}")
                values[f.name] = raw
            else:
                values[f.name] = int(raw)
        if values.get("log_partition_events", 1) < 1:  # type: ignore[operator]
            raise ValueError("TRACKYARD_LOG_PARTITION_EVENTS must be at least 1")
        return cls(**values)  # type: ignore[arg-type]


def _parsed(field: str, raw: str, parse: Callable[[str], int]) -> int:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"{env_name(field)}: {exc}") from None

"""``trackyard serve``: run the collector."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

import click
from rich.console import Console

from trackyard import __version__, snippets
from trackyard.cli._options import backend_urls, data_dir_option, log_level_option
from trackyard.config import DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, Settings
from trackyard.consumers.supervisor import Supervisor, log_to_stderr, run_in_foreground
from trackyard.errors import StoreUnavailable
from trackyard.http import server
from trackyard.metrics.processes import end_multiprocess, start_multiprocess
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import describe_store, open_backends
from trackyard.units import parse_duration, parse_size

_console = Console(stderr=True)


@click.command()
@click.option(
    "--role",
    type=click.Choice(["all", "ingest", "consumers"]),
    default="all",
    show_default=True,
    envvar="TRACKYARD_ROLE",
    show_envvar=True,
    help="all: the HTTP collectors and every consumer (profiles), on this machine. ingest: only the "
    "HTTP collectors. consumers: only the consumers, no port (like `trackyard consume`). The roles "
    "meet only in the event log, so an ingest and a consumers process can share a data dir.",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    envvar="TRACKYARD_HOST",
    show_envvar=True,
    help="Address to listen on. Use 0.0.0.0 to accept connections from other machines.",
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="TRACKYARD_PORT",
    show_envvar=True,
    help="TCP port; 0 picks a free one (printed at start).",
)
@data_dir_option
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    envvar="TRACKYARD_STORE",
    show_envvar=True,
    help="Where the SQLite files are. Unset: in --data-dir. sqlite:///ABSOLUTE/DIR: in DIR. "
    "(PostgreSQL and NATS JetStream: see --state and --log.)",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="TRACKYARD_WORKERS",
    show_envvar=True,
    help="Worker processes. They share the port and the store; 1 per core is a good start.",
)
@click.option(
    "--durability",
    type=click.Choice(["full", "process"]),
    default="full",
    show_default=True,
    envvar="TRACKYARD_DURABILITY",
    show_envvar=True,
    help="full: acknowledge once the write is durable on disk (survives a power loss). process: "
    "acknowledge once the write survives a crash of trackyard, not of the machine; faster.",
)
@click.option(
    "--dedup-window",
    default=24 * 3600,
    show_default=True,
    type=click.IntRange(3600, None),
    envvar="TRACKYARD_DEDUP_WINDOW",
    show_envvar=True,
    metavar="SECONDS",
    help="How long a messageId is remembered per source. Duplicates inside it are stored once.",
)
@click.option(
    "--admin-token",
    envvar="TRACKYARD_ADMIN_TOKEN",
    show_envvar=True,
    help=(
        "Token that unlocks the web console at /console (sign in with it: live debugger, sources, "
        "destinations, profiles) and, as a Bearer token, the read and admin API (profiles, accounts). "
        "Without it both are off."
    ),
)
@click.option(
    "--warehouse",
    "warehouse_url",
    envvar="TRACKYARD_WAREHOUSE",
    show_envvar=True,
    metavar="URL",
    help="The warehouse the loader (a consumer) keeps loading: postgresql://user@host/db or "
    "duckdb:///PATH. Default: warehouse.duckdb in the data dir, which `trackyard sql` reads meanwhile.",
)
@click.option(
    "--no-warehouse",
    is_flag=True,
    help="Run no warehouse loader, for when nobody queries the warehouse (same as TRACKYARD_WAREHOUSE=off).",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    envvar="TRACKYARD_METRICS",
    show_envvar=True,
    help="Serve Prometheus metrics at GET /metrics (docs/metrics.md). --no-metrics also stops the counting.",
)
@click.option(
    "--metrics-token",
    envvar="TRACKYARD_METRICS_TOKEN",
    show_envvar=True,
    help="Bearer token GET /metrics asks for (Prometheus: authorization.credentials). Without it "
    "/metrics is open: counts and source names, no keys or events.",
)
@click.option(
    "--access-log",
    is_flag=True,
    envvar="TRACKYARD_ACCESS_LOG",
    show_envvar=True,
    help="Log a line per request (method, path, status, bytes, ms, format, source, client IP) at INFO "
    "on the trackyard.access logger. Off by default: it costs throughput on small requests.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="TRACKYARD_LOG_FORMAT",
    show_envvar=True,
    help="json: one JSON object a line (ts, level, logger, msg and the line's fields), for log shippers.",
)
@click.option(
    "--retention",
    envvar="TRACKYARD_RETENTION",
    show_envvar=True,
    metavar="DURATION",
    help="Drop events older than this (30d, 12h; default: forever), in whole compacted blocks, once "
    "every enabled consumer has read them. Rejects: TRACKYARD_REJECTS_RETENTION (30d).",
)
@click.option(
    "--retention-size",
    envvar="TRACKYARD_RETENTION_SIZE",
    show_envvar=True,
    metavar="SIZE",
    help="Drop the oldest events while the log takes more than this on disk (50GB, 500MB; "
    "default: no limit).",
)
@click.option(
    "--retention-ignore-consumers",
    is_flag=True,
    default=None,
    envvar="TRACKYARD_RETENTION_IGNORE_CONSUMERS",
    show_envvar=True,
    help="Let retention drop events an enabled consumer has not read yet (by default they are kept).",
)
@log_level_option
def serve(
    role: str,
    host: str,
    port: int,
    data_dir: Path,
    store_url: str | None,
    workers: int,
    durability: str,
    dedup_window: int,
    admin_token: str | None,
    warehouse_url: str | None,
    retention: str | None,
    retention_size: str | None,
    retention_ignore_consumers: bool | None,
    no_warehouse: bool,
    metrics: bool,
    metrics_token: str | None,
    access_log: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Run the collector and the consumers that build on its log.

    Creates the store under --data-dir if needed, and a source named "default" when there
    is none, printing its write key. By default (--role all) one command runs everything:
    the HTTP workers and a supervisor with every consumer in processes of their own.
    Stops gracefully on SIGTERM or Ctrl-C: requests in flight finish and their events are
    committed, and each consumer commits its batch, within seconds.
    """
    # Settings without an option (limits, queue bounds) come from TRACKYARD_* variables.
    state_url, log_url = backend_urls()
    settings = dataclasses.replace(
        Settings.from_env(),
        data_dir=data_dir,
        store_url=store_url or None,
        state_url=state_url or None,
        log_url=log_url or None,
        durability=durability,  # type: ignore[arg-type]
        dedup_window_seconds=dedup_window,
        admin_token=admin_token or None,
        warehouse_url="off" if no_warehouse else warehouse_url or None,
        metrics=metrics,
        metrics_token=metrics_token or None,
        access_log=access_log,
        log_format=log_format,  # type: ignore[arg-type]
    )
    settings = _with_retention(settings, retention, retention_size, retention_ignore_consumers)
    try:
        backends = open_backends(settings)
    except (StoreURLError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if role == "consumers":
        backends.close()
        _run_consumers(settings, log_level)
        return
    try:
        existing = backends.sources.sources()
        first = None if existing else backends.sources.add_source("default")
    finally:
        backends.close()
    sock = _listen(host, port)
    url = server.url_of(sock)
    if first is not None:
        _print_first_source(url, first.write_key)
    else:
        names = [s.name for s in existing]
        shown = "default" if "default" in names else names[0]
        where = "" if data_dir == Path(DEFAULT_DATA_DIR) else f" --data-dir {data_dir}"
        click.echo(
            f"Sources: {', '.join(names)}. Print a write key and snippets with: "
            f"trackyard sources show {shown}{where}"
        )
    os.environ.update(settings.to_env())
    supervisor = None if role == "ingest" else Supervisor(settings, log_level=log_level)
    click.echo(
        f"trackyard {__version__} listening on {url} (data: {data_dir}, store: {describe_store(settings)}, "
        f"workers: {workers}, durability: {durability}, role: {role})",
        err=False,
    )
    if not settings.retention_seconds and not settings.retention_bytes:
        click.echo(
            "Retention: none set, so the log keeps every event (compacted once cold). "
            "Set --retention 30d or --retention-size 50GB to bound it (docs/storage.md#retention)."
        )
    sys.stdout.flush()
    # Before any worker starts (workers count into it). One worker counts in memory, at
    # half the cost per request (docs/metrics.md).
    metrics_dir = start_multiprocess(workers) if metrics else None
    if supervisor is not None:
        log_to_stderr(log_level, settings.log_format)
        supervisor.start()
    try:
        server.run(
            "trackyard.http.app:create_app_from_env",
            sock,
            workers=workers,
            log_level=log_level,
            log_format=settings.log_format,
            access_log=access_log,
            factory=True,
            on_stop=None if supervisor is None else supervisor.request_stop,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
        if metrics_dir is not None:
            end_multiprocess(metrics_dir)


def _with_retention(
    settings: Settings, retention: str | None, size: str | None, ignore_consumers: bool | None
) -> Settings:
    try:
        if retention is not None:
            settings = dataclasses.replace(settings, retention_seconds=parse_duration(retention))
        if size is not None:
            settings = dataclasses.replace(settings, retention_bytes=parse_size(size))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if ignore_consumers is not None:
        settings = dataclasses.replace(settings, retention_ignore_consumers=ignore_consumers)
    return settings


def _run_consumers(settings: Settings, log_level: str) -> None:
    os.environ.update(settings.to_env())
    click.echo(f"trackyard {__version__} consumers running (data: {settings.data_dir}, role: consumers)")
    sys.stdout.flush()
    run_in_foreground(settings, log_level=log_level)


def _listen(host: str, port: int) -> socket.socket:
    try:
        return server.listen(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port."
        ) from None


def _print_first_source(url: str, write_key: str) -> None:
    click.echo(f"Created a source named 'default'. Its write key:\n\n    {write_key}\n")
    click.echo("(Print it again at any time with: trackyard sources show default)\n")
    click.echo(f"{snippets.sdks(url, write_key)}\n")
    # The curl example comes last, just above the "listening" line, where it is easiest to copy.
    click.echo(f"Send a first event:\n\n{snippets.curl(url, write_key)}\n")

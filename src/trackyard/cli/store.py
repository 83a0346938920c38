"""``trackyard store``: what the store keeps and on how many bytes; retention now; vacuum."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from trackyard.cli._options import backend_urls, data_dir_option
from trackyard.cli._store import opened
from trackyard.config import Settings
from trackyard.retention.policy import PassReport, Policy, retention_status, run_pass
from trackyard.storage.base import LogMaintenance, StoreURLError
from trackyard.storage.factory import Backends, maintenance_available, open_maintenance
from trackyard.units import format_duration, format_size, parse_duration, parse_size


@click.group()
def store() -> None:
    """See what the store keeps and run its retention (docs/storage.md#retention)."""


def _settings(data_dir: Path) -> Settings:
    """The server's settings (the TRACKYARD_* variables: retention, warehouse), for this data dir
    and the --state and --log given."""
    state_url, log_url = backend_urls()
    try:
        settings = Settings.from_env()
        return dataclasses.replace(
            settings,
            data_dir=data_dir,
            state_url=state_url or settings.state_url,
            log_url=log_url or settings.log_url,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def _maintained(settings: Settings) -> Iterator[tuple[Backends, LogMaintenance]]:
    try:  # checked first: a JetStream log is not even opened
        if not maintenance_available(settings):
            open_maintenance(settings)  # raises the error that says what to do instead
    except StoreURLError as exc:
        raise click.ClickException(str(exc)) from None
    with opened(settings.data_dir, settings=settings) as backends:
        maintenance = open_maintenance(settings)
        try:
            yield backends, maintenance
        finally:
            maintenance.close()


@store.command("status")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def store_status(data_dir: Path, as_json: bool) -> None:
    """Print the events kept, the bytes on disk by part, the oldest event and what holds
    retention back.

    \b
    Parts: log (the events, hot and compacted), dedup (the messageIds of the dedup
    window), rejects, profiles, consumers (cursors, dead letters, destinations),
    warehouse (the embedded DuckDB file), other (sources), free (pages kept for reuse),
    wal (SQLite's write-ahead log, cut back to 64 MB at checkpoints). On PostgreSQL each
    part is its tables' size (log: the partitions of events; other: the rest).
    Retention is set on the server: TRACKYARD_RETENTION, TRACKYARD_RETENTION_SIZE
    (serve --retention, --retention-size); this command reads the same variables.
    """
    settings = _settings(data_dir)
    policy = Policy.from_settings(settings)
    with _maintained(settings) as (backends, maintenance):
        now = retention_status(backends, maintenance, policy)
        extent, usage, holds, held = now.extent, now.disk_usage, now.holds, now.held_by
        auto_vacuum = maintenance.returns_space()
    status: dict[str, Any] = {
        "events": extent.events,
        "compacted_events": extent.compacted_events,
        "blocks": extent.blocks,
        "oldest_seq": extent.oldest_seq,
        "head_seq": extent.head_seq,
        "oldest_received_at": _iso(extent.oldest_received_ms),
        "json_bytes": extent.json_bytes,
        "log_bytes": extent.stored_bytes,
        "bytes_per_event": round(extent.stored_bytes / extent.events, 1) if extent.events else None,
        "disk_bytes": usage,
        "retention": {
            "max_age": format_duration(policy.max_age_seconds),
            "max_size": format_size(policy.max_bytes),
            "ignore_consumers": policy.ignore_consumers,
            "rejects": format_duration(policy.rejects_seconds),
            "dead_letters": format_duration(policy.dead_letters_seconds),
            "returns_space": auto_vacuum,
        },
        "consumers": {hold.consumer: hold.position for hold in holds},
        "held_back_by": [
            {"consumer": h.consumer, "position": h.position, **({"note": h.note} if h.note else {})}
            for h in held
        ],
    }
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(status) + b"\n")
        return
    _print_status(status)


def _print_status(status: dict[str, Any]) -> None:
    events = status["events"]
    ratio = status["log_bytes"] / status["json_bytes"] if status["json_bytes"] else 0.0
    click.echo(
        f"events kept: {events:,} (seqs {status['oldest_seq']:,}-{status['head_seq']:,}; "
        f"{status['compacted_events']:,} compacted in {status['blocks']:,} blocks)"
    )
    click.echo(f"oldest event: {status['oldest_received_at'] or '-'}")
    click.echo(
        f"log: {format_size(status['log_bytes'])} for {format_size(status['json_bytes'])} of JSON "
        f"({ratio:.2f}x; {status['bytes_per_event'] or 0} bytes an event)"
    )
    click.echo(
        "on disk: "
        + ", ".join(
            f"{part} {format_size(size) if size else '0 B'}" for part, size in status["disk_bytes"].items()
        )
    )
    retention = status["retention"]
    click.echo(
        f"retention: keep {retention['max_age']}, log size limit {retention['max_size']}"
        + (" (even unread events)" if retention["ignore_consumers"] else "")
        + f"; rejects {retention['rejects']}, dead letters {retention['dead_letters']}"
    )
    if not retention["returns_space"]:
        click.echo(
            "note: this store was made before retention existed: dropped space is reused but not "
            "returned to the OS until `trackyard store vacuum`"
        )
    consumers = ", ".join(f"{name} at {position:,}" for name, position in status["consumers"].items())
    click.echo(f"consumers: {consumers or 'none'}")
    if status["held_back_by"]:
        held = ", ".join(f"{h['consumer']} (at seq {h['position']:,})" for h in status["held_back_by"])
        click.echo(f"retention is held back by: {held}; they have not read what is due to be dropped")
    else:
        click.echo("retention is held back by: nothing")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@store.command("prune")
@data_dir_option
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Drop events older than this (30d, 12h, 90m). Default: TRACKYARD_RETENTION.",
)
@click.option(
    "--size",
    metavar="SIZE",
    help="Drop the oldest events until the log is at most this (50GB, 500MB). "
    "Default: TRACKYARD_RETENTION_SIZE.",
)
@click.option(
    "--ignore-consumers",
    is_flag=True,
    help="Drop also what an enabled consumer (profiles, a destination, the warehouse) has not read yet.",
)
def store_prune(data_dir: Path, older_than: str | None, size: str | None, ignore_consumers: bool) -> None:
    """Run retention now: compact, drop whole blocks past the limits (a PostgreSQL log's
    partitions, a JetStream stream's ranges), prune rejects and dead letters, and give the
    space back to the OS.

    Safe while the server runs (each step is one short transaction) and when interrupted:
    what was dropped is gone, the rest is whole. Events an enabled consumer has not read
    are kept unless --ignore-consumers; the output says which consumer keeps them.
    """
    settings = _settings(data_dir)
    try:
        overrides: dict[str, Any] = {}
        if older_than is not None:
            overrides["max_age_seconds"] = parse_duration(older_than)
        if size is not None:
            overrides["max_bytes"] = parse_size(size)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    policy = dataclasses.replace(
        Policy.from_settings(settings),
        ignore_consumers=ignore_consumers or settings.retention_ignore_consumers,
        **overrides,
    )
    console = Console(stderr=True)
    with _maintained(settings) as (backends, maintenance):
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("pruning")

            def show(report: PassReport) -> None:
                progress.update(
                    task,
                    description=f"compacted {report.compacted_events:,} events, "
                    f"dropped {report.dropped_events:,} ({format_size(report.dropped_bytes)})",
                )

            report = run_pass(backends, maintenance, policy, progress=show)
        extent = maintenance.extent()
    click.echo(
        f"dropped {report.dropped_events:,} events ({format_size(report.dropped_bytes)} on disk) in "
        f"{report.dropped_parts:,} parts, {report.rejects:,} rejects, {report.dead_letters:,} dead letters; "
        f"{format_size(report.reclaimed_bytes)} returned to the OS; {extent.events:,} events kept"
    )
    if report.held_by:
        held = ", ".join(f"{h.consumer} (at seq {h.position:,})" for h in report.held_by)
        click.echo(
            f"held back by {held}: events due to be dropped are kept until it has read them "
            "(--ignore-consumers drops them anyway)"
        )


@store.command("vacuum")
@data_dir_option
def store_vacuum(data_dir: Path) -> None:
    """Rewrite the store so that retention gives space back to the OS (stores made before it).

    A store created by this version needs nothing. An older one reuses the space of what
    retention dropped but never shrinks; this converts it (auto_vacuum=INCREMENTAL). It
    needs free disk for a copy of the store, and writes wait until it is done: stop the
    server first for a large store.
    """
    settings = _settings(data_dir)
    with _maintained(settings) as (_, maintenance):
        if maintenance.returns_space():
            click.echo("nothing to do: this store gives space back to the OS already")
            return
        with Console(stderr=True).status("vacuuming (the store is rewritten)"):
            maintenance.vacuum()
    click.echo("done: retention now returns dropped space to the OS")

"""``trackyard consume`` and ``trackyard consumers``: run the consumers, see how far they are."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from trackyard import __version__
from trackyard.cli._options import backend_urls, data_dir_option, log_level_option
from trackyard.cli._store import opened
from trackyard.config import Settings
from trackyard.consumers.registry import (
    UnknownConsumer,
    check_names,
    chosen_families,
    known_names,
    resolve,
)
from trackyard.consumers.status import consumer_statuses
from trackyard.consumers.supervisor import run_in_foreground
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import check_store_url


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@data_dir_option
@log_level_option
def consume(names: tuple[str, ...], data_dir: Path, log_level: str) -> None:
    """Run consumers of the event log in the foreground: NAMEs, or all of them.

    \b
    Consumers: profiles (builds people and accounts); warehouse (loads Segment's
    warehouse tables, docs/warehouse.md: warehouse.duckdb in the data dir, or the one
    TRACKYARD_WAREHOUSE names; TRACKYARD_WAREHOUSE=off turns it off); destinations
    (every enabled destination, each its own consumer destination:NAME,
    docs/destinations.md; destinations added, changed or removed later start and stop
    within a second); destination:NAME (that one only); retention (compaction and
    retention, docs/storage.md); metrics (reads the store gauges /metrics serves,
    docs/metrics.md: run it beside a `serve --role ingest`).
    Each runs in a process of its own under a lease, so one instance of a consumer runs
    per data dir (or per --state database, on any number of nodes): started twice, the
    second waits and takes over when the first stops. A consumer that dies is restarted.
    Pair it with `trackyard serve --role ingest` on the same data dir or --state.
    Stops on SIGTERM or Ctrl-C once each consumer has committed its batch.
    """
    state_url, log_url = backend_urls()
    settings = dataclasses.replace(
        Settings.from_env(), data_dir=data_dir, state_url=state_url or None, log_url=log_url or None
    )
    try:
        check_store_url(settings)
    except StoreURLError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        chosen = [spec.name for spec in resolve(names, settings)] + chosen_families(names)
    except UnknownConsumer as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    os.environ.update(settings.to_env())
    shown = ", ".join(chosen)
    click.echo(f"trackyard {__version__} consumers running: {shown} (data: {data_dir})")
    sys.stdout.flush()
    run_in_foreground(settings, names, log_level)


@click.group()
def consumers() -> None:
    """See the consumers of the event log (run them with `trackyard consume`)."""


@consumers.command("status")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a consumer, a line each.")
def consumers_status(data_dir: Path, as_json: bool) -> None:
    """Print each consumer's cursor, the log's head, the lag, whether it runs, and its dead letters.

    Each destination is a consumer line of its own, destination:NAME (disabled ones
    included: they keep their cursor). A dead letter is an event a consumer failed on
    again and again; it is kept with the reason, and the consumer went on past it.
    """
    settings = dataclasses.replace(Settings.from_env(), data_dir=data_dir)
    with opened(data_dir) as backends:
        rows = []
        for status in consumer_statuses(backends, settings):
            row: dict[str, Any] = {
                "name": status.name,
                "running": status.running,
                "cursor": status.cursor,
                "head": status.head,
                "lag": status.lag,
                "dead_letters": status.dead_letters,
            }
            if status.error is not None:
                row["error"] = status.error
            rows.append(row)
    _emit(
        rows,
        as_json,
        lambda row: (
            f"{row['name']}: {'running' if row['running'] else 'not running'}, "
            f"cursor {row['cursor']}, head {row['head']}, lag {row['lag']}, "
            f"dead letters {row['dead_letters']}" + (f" ({row['error']})" if "error" in row else "")
        ),
    )


@consumers.command("dead-letters")
@click.argument("name", required=False)
@data_dir_option
@click.option("--after", default=0, type=click.IntRange(min=0), metavar="ID", help="Start after this id.")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="At most this many."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON, one dead letter a line, the event included."
)
def consumers_dead_letters(name: str | None, data_dir: Path, after: int, limit: int, as_json: bool) -> None:
    """Print the events consumers gave up on (of consumer NAME, or all), oldest first, with why.

    Each was tried again and again (with backoff) before it was set aside; the consumer
    went on past it. The event itself is still in the log at its seq.
    """
    if name is not None:
        try:
            check_names([name])
        except UnknownConsumer:
            raise click.BadParameter(
                f"no consumer named {name!r}; there are: {', '.join(known_names())}"
            ) from None
    with opened(data_dir) as backends:
        letters = backends.dead_letters().read(name, after=after, limit=limit)
    rows = [
        {
            "id": letter.id,
            "consumer": letter.consumer,
            "seq": letter.seq,
            "reason": letter.reason,
            "attempts": letter.attempts,
            "failed_at_ms": letter.failed_at_ms,
            "event": msgspec.json.decode(letter.body),
        }
        for letter in letters
    ]
    _emit(
        rows,
        as_json,
        lambda row: (
            f"{row['id']}\t{row['consumer']}\tseq {row['seq']}\t{row['attempts']} attempts\t{row['reason']}"
        ),
    )


def _emit(rows: list[dict[str, Any]], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """One row a line: JSON, or ``text(row)``."""
    for row in rows:
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(row) + b"\n")
        else:
            click.echo(text(row))
    sys.stdout.flush()

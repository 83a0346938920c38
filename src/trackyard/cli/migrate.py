"""``trackyard migrate``: move the embedded SQLite store into PostgreSQL (and JetStream)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import TaskID

from trackyard.cli._options import plain_data_dir_option
from trackyard.cli._progress import progress_bar
from trackyard.config import Settings
from trackyard.errors import StoreUnavailable
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import check_store_url
from trackyard.storage.migrate import MigrationError, migrate


@click.command("migrate")
@plain_data_dir_option
@click.option(
    "--to-state",
    "state_url",
    required=True,
    metavar="URL",
    help="The PostgreSQL state to copy into: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.",
)
@click.option(
    "--to-log",
    "log_url",
    metavar="URL",
    help="Where the log goes: a PostgreSQL database of its own (postgresql://...) or a JetStream "
    "stream (nats://HOST:PORT[,HOST:PORT...], empty or an earlier copy of this log). Unset: the "
    "log goes into the --to-state database.",
)
def migrate_command(data_dir: Path, state_url: str, log_url: str | None) -> None:
    """Copy the SQLite store in --data-dir into PostgreSQL: sources, destinations, the event log,
    the profiles and the consumers' cursors. With --to-log nats://..., the log goes into a
    JetStream stream instead (each event at its own seq; the state still into --to-state).

    \b
    Seqs are kept, so every cursor stays valid, and each event's dedup key goes with it, so a
    client retrying an event sent before the move is still deduplicated. Safe to run again:
    it copies only what the target lacks (an interrupted run resumes; a run after more events
    arrived copies those). To switch over:
      trackyard migrate --to-state postgresql://trackyard@db/trackyard   # while serving
      (stop the servers on the SQLite store)
      trackyard migrate --to-state postgresql://trackyard@db/trackyard   # the last events
      trackyard serve --state postgresql://trackyard@db/trackyard
    With a JetStream log, add --to-log nats://n1:4222,n2:4222,n3:4222 to every migrate and
    --log with the same URL to serve.
    """
    source = Settings(data_dir=data_dir)
    target = Settings(data_dir=data_dir, state_url=state_url, log_url=log_url or None)
    tasks: dict[str, TaskID] = {}
    try:
        check_store_url(target)
        with progress_bar() as bar:

            def advance(step: str, done: int, total: int) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(step, total=total)
                bar.update(tasks[step], completed=done, total=total)

            report = migrate(source, target, advance)
    except (MigrationError, StoreURLError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"copied {report.sources} sources, {report.destinations} destinations, {report.events} events, "
        f"{'the' if report.profiles_copied else 'no (already there)'} profiles and {report.cursors} cursors"
    )

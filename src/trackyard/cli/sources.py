"""``trackyard sources``: manage sources and their write keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from trackyard.cli._options import data_dir_option
from trackyard.cli._store import opened
from trackyard.storage.base import NoSuchSource, SourceExists
from trackyard.storage.secrets import generate_secret

_console = Console(stderr=True)


@click.group()
def sources() -> None:
    """Manage sources: each has a write key that its clients send events with."""


@sources.command("add")
@click.argument("name")
@click.option("--write-key", help="Use this key instead of a generated one (for migrating existing clients).")
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="EVENTS_PER_SECOND",
    help="Answer 429 with Retry-After when the source sends more than this (per worker process).",
)
@click.option(
    "--secret",
    help="The source secret for private (Basic) auth, as Bloomreach's API keys use; generated when not "
    "given. Stored only as a hash.",
)
@data_dir_option
def sources_add(
    name: str, write_key: str | None, rate_limit: float | None, secret: str | None, data_dir: Path
) -> None:
    """Create a source and print its write key.

    The write key goes to standard output alone, so KEY=$(trackyard sources add web) works.
    A generated source secret (only needed for private auth) is printed once, to standard error.
    """
    chosen = secret or generate_secret()
    with opened(data_dir, create=True) as backends:
        try:
            source = backends.sources.add_source(name, write_key, rate_limit, chosen)
        except SourceExists:
            raise click.ClickException(
                f"A source named {name!r}, or one with that write key, exists already."
            ) from None
    click.echo(source.write_key)
    if secret is None:
        click.echo(f"secret: {chosen}  (shown once; for private auth such as Bloomreach's Basic)", err=True)


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source and line.")
@data_dir_option
def sources_list(as_json: bool, data_dir: Path) -> None:
    """List sources with their write keys and state."""
    with opened(data_dir) as backends:
        rows = backends.sources.sources()
    if as_json:
        for s in rows:
            click.echo(msgspec.json.encode(s.public()))
        return
    table = Table("name", "write key", "enabled", "rate limit (events/s)", "created")
    for s in rows:
        table.add_row(
            s.name,
            s.write_key,
            "yes" if s.enabled else "no",
            "-" if s.rate_limit is None else f"{s.rate_limit:g}",
            s.created_at,
        )
    Console().print(table)


def _change(data_dir: Path, name: str, action: str, *args: Any) -> None:
    with opened(data_dir) as backends:
        try:
            source = getattr(backends.sources, action)(name, *args)
        except NoSuchSource:
            raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.") from None
        except SourceExists as exc:
            raise click.ClickException(str(exc)) from None
    if action == "rotate_source":
        click.echo(source.write_key)


@sources.command("rotate")
@click.argument("name")
@click.option("--write-key", help="The new key; generated when not given.")
@data_dir_option
def sources_rotate(name: str, write_key: str | None, data_dir: Path) -> None:
    """Replace a source's write key and print the new one. The old key stops working at once."""
    _change(data_dir, name, "rotate_source", write_key)


@sources.command("secret")
@click.argument("name")
@click.option("--secret", help="The new secret; generated when not given.")
@data_dir_option
def sources_secret(name: str, secret: str | None, data_dir: Path) -> None:
    """Set a new source secret and print it. The old one stops working at once."""
    chosen = secret or generate_secret()
    _change(data_dir, name, "set_source_secret", chosen)
    click.echo(chosen)


@sources.command("disable")
@click.argument("name")
@data_dir_option
def sources_disable(name: str, data_dir: Path) -> None:
    """Refuse the source's events (401) until it is enabled again. Stored events are kept."""
    _change(data_dir, name, "set_source_enabled", False)


@sources.command("enable")
@click.argument("name")
@data_dir_option
def sources_enable(name: str, data_dir: Path) -> None:
    """Accept the source's events again."""
    _change(data_dir, name, "set_source_enabled", True)


@sources.command("limit")
@click.argument("name")
@click.argument("events_per_second", type=click.FloatRange(min=0))
@data_dir_option
def sources_limit(name: str, events_per_second: float, data_dir: Path) -> None:
    """Set a source's rate limit in events per second; 0 removes it."""
    _change(data_dir, name, "set_source_rate_limit", events_per_second or None)

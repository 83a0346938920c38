"""``trackyard sources``: manage sources and their write keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from trackyard import snippets
from trackyard.cli._options import data_dir_option, url_option
from trackyard.cli._store import opened
from trackyard.storage.base import NoSuchSource, SourceExists
from trackyard.storage.secrets import generate_secret
from trackyard.storage.source_names import ALLOWED, InvalidSourceName, check_source_name

_console = Console(stderr=True)


@click.group()
def sources() -> None:
    """Manage sources: each has a write key that its clients send events with.

    To see a source's write key again: trackyard sources show NAME.
    """


@sources.command(
    "add",
    help=f"""Create a source and print its write key.

    NAME is {ALLOWED}.

    The write key goes to standard output alone, so KEY=$(trackyard sources add web) works.
    A generated source secret (only needed for private auth) is printed once, to standard error.
    """,
)
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
    try:
        check_source_name(name)  # before the store is created for nothing
    except InvalidSourceName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
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
    headers = ("name", "write key", "enabled", "rate limit (events/s)", "created")
    cells = [
        (
            s.name,
            s.write_key,
            "yes" if s.enabled else "no",
            "-" if s.rate_limit is None else f"{s.rate_limit:g}",
            s.created_at,
        )
        for s in rows
    ]
    table = Table(*headers)
    for row in cells:
        table.add_row(*row)
    # Never shortened: a key cut to "cDyLvnue…" cannot be copied. On a terminal too narrow
    # for the whole table, its lines run past the edge (the terminal wraps them) instead.
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]
    whole = sum(widths) + 3 * len(widths) + 1  # each cell's padding and border, the last border
    Console(width=max(Console().width, whole)).print(table)


@sources.command("show")
@click.argument("name")
@url_option("The server's base URL, as the snippets should use it.")
@click.option("--json", "as_json", is_flag=True, help="Print the source as one JSON object, no snippets.")
@data_dir_option
def sources_show(name: str, url: str, as_json: bool, data_dir: Path) -> None:
    """Print a source's full write key and state, and how to send it a first event.

    The snippets are the ones the first `trackyard serve` prints: curl, and the Python,
    Node.js and browser SDKs.
    """
    with opened(data_dir) as backends:
        source = backends.sources.source_by_name(name)
    if source is None:
        raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.")
    if as_json:
        click.echo(msgspec.json.encode(source.public()))
        return
    url = url.rstrip("/")
    rate = "none" if source.rate_limit is None else f"{source.rate_limit:g} events/s"
    click.echo(
        f"name: {source.name}\nid: {source.id}\nwrite key: {source.write_key}\n"
        f"enabled: {'yes' if source.enabled else 'no'}\nrate limit: {rate}\ncreated: {source.created_at}\n"
    )
    click.echo(f"Send a first event:\n\n{snippets.curl(url, source.write_key)}\n")
    click.echo(snippets.sdks(url, source.write_key))


_REMOVE_EFFECT = (
    "Its write key stops working at once (401). Its events and rejects stay in the log, "
    "under its source id (source.id and source.name in each event); no later source is "
    "given that id. A new source may take the name."
)


@sources.command(
    "remove",
    help=f"""Delete a source, after asking. {_REMOVE_EFFECT}

    To stop a source only for a while, use `trackyard sources disable NAME` instead.
    """,
)
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@data_dir_option
def sources_remove(name: str, yes: bool, data_dir: Path) -> None:
    with opened(data_dir) as backends:
        source = backends.sources.source_by_name(name)
        if source is None:
            raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.")
        if not yes:
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"Not removing {name!r}: there is no terminal to confirm on. "
                    f"Pass --yes to remove it: trackyard sources remove {name} --yes."
                )
            click.echo(f"Removing the source {name!r} (id {source.id}). {_REMOVE_EFFECT}", err=True)
            click.confirm("Remove it?", abort=True, err=True)
        backends.sources.remove_source(name)
    click.echo(
        f"Removed the source {name!r}. Its events stay in the log under source id {source.id}; "
        "a new source may take the name, with a new id.",
        err=True,
    )


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

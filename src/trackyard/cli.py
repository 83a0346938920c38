"""The ``trackyard`` command: run the server, manage sources, read what was stored.

Every command's ``--help`` is its documentation; ``docs/cli.md`` is generated from it
and a test keeps the two in step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from trackyard import __version__, server
from trackyard.cli_options import data_dir_option
from trackyard.config import DEFAULT_HOST, DEFAULT_PORT, Settings
from trackyard.model import EVENT_TYPES
from trackyard.profiles.cli import accounts, profiles
from trackyard.send import send
from trackyard.store.secrets import generate_secret
from trackyard.store.sqlite import SQLiteStore

_console = Console(stderr=True)


def _open(data_dir: Path, *, create: bool = False) -> SQLiteStore:
    if not create and not (data_dir / "trackyard.db").exists():
        raise click.ClickException(
            f"No trackyard store in {data_dir}. Start the server there first (trackyard serve --data-dir "
            f"{data_dir}) or pass the right --data-dir."
        )
    return SQLiteStore(Settings(data_dir=data_dir), writer=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trackyard")
def main() -> None:
    """trackyard: a self-hosted collector for customer events.

    It receives events in the wire format of Segment's HTTP Tracking API, so Segment's
    and RudderStack's SDKs work against it by changing only their host, and it stores
    every acknowledged event durably in the Segment Spec's shape.

    \b
    Quick start:
      trackyard serve                       # prints a write key and a curl example
      trackyard events --json               # what was stored, one JSON object a line
    """


@main.command()
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
    help="full: fsync before acknowledging (survives power loss). process: acknowledge once the write "
    "is in SQLite's log (survives a crash of trackyard, not of the machine); faster.",
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
    help="Bearer token that unlocks the read and admin API (profiles, accounts). Without it that API is off.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    envvar="TRACKYARD_LOG_LEVEL",
    show_envvar=True,
    help="Server log verbosity.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    workers: int,
    durability: str,
    dedup_window: int,
    admin_token: str | None,
    log_level: str,
) -> None:
    """Run the collector.

    Creates the store under --data-dir if needed, and a source named "default" when there
    is none, printing its write key. Stops gracefully on SIGTERM or Ctrl-C: requests in
    flight finish and their events are committed first.
    """
    # Settings without an option (limits, queue bounds) come from TRACKYARD_* variables.
    settings = dataclasses.replace(
        Settings.from_env(),
        data_dir=data_dir,
        durability=durability,  # type: ignore[arg-type]
        dedup_window_seconds=dedup_window,
        admin_token=admin_token or None,
    )
    store = SQLiteStore(settings, writer=False)
    first = None if store.sources() else store.add_source("default")
    store.close()
    sock = _listen(host, port)
    url = server.url_of(sock)
    if first is not None:
        _print_first_source(url, first.write_key)
    os.environ.update(settings.to_env())
    click.echo(
        f"trackyard {__version__} listening on {url} (data: {data_dir}, workers: {workers}, "
        f"durability: {durability})",
        err=False,
    )
    sys.stdout.flush()
    server.run("trackyard.app:create_app_from_env", sock, workers=workers, log_level=log_level, factory=True)


def _listen(host: str, port: int) -> socket.socket:
    try:
        return server.listen(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port."
        ) from None


def _print_first_source(url: str, write_key: str) -> None:
    example = (
        f"curl -u '{write_key}:' -H 'Content-Type: application/json' {url}/v1/track \\\n"
        """  -d '{"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}}'"""
    )
    click.echo(f"Created a source named 'default'. Its write key:\n\n    {write_key}\n")
    click.echo(f"Send a first event:\n\n{example}\n")


@main.group()
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
    import sqlite3

    store = _open(data_dir, create=True)
    chosen = secret or generate_secret()
    try:
        source = store.add_source(name, write_key, rate_limit, chosen)
    except sqlite3.IntegrityError:
        raise click.ClickException(
            f"A source named {name!r}, or one with that write key, exists already."
        ) from None
    finally:
        store.close()
    click.echo(source.write_key)
    if secret is None:
        click.echo(f"secret: {chosen}  (shown once; for private auth such as Bloomreach's Basic)", err=True)


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source and line.")
@data_dir_option
def sources_list(as_json: bool, data_dir: Path) -> None:
    """List sources with their write keys and state."""
    store = _open(data_dir)
    rows = store.sources()
    store.close()
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
    store = _open(data_dir)
    try:
        source = getattr(store, action)(name, *args)
    except KeyError:
        raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.") from None
    finally:
        store.close()
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


def _source_filter(store: SQLiteStore, name: str | None) -> int | None:
    if name is None:
        return None
    source = store.source_by_name(name)
    if source is None:
        raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.")
    return source.id


@main.command()
@data_dir_option
@click.option("--source", "source_name", metavar="NAME", help="Only this source's events.")
@click.option(
    "--type", "event_type", type=click.Choice(sorted(EVENT_TYPES)), help="Only events of this type."
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=1), help="At most this many events.  [default: all]"
)
@click.option(
    "--after",
    default=0,
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Start after this position in the log (the seq of the last event you read).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print canonical JSON, one event a line (for jq and scripts)."
)
def events(
    data_dir: Path,
    source_name: str | None,
    event_type: str | None,
    limit: int | None,
    after: int,
    as_json: bool,
) -> None:
    """Print stored events, oldest first, in the canonical shape (the Segment Spec).

    Safe to run while the server is running.
    """
    store = _open(data_dir)
    source_id = _source_filter(store, source_name)
    out = sys.stdout.buffer
    table = (
        None if as_json else Table("seq", "type", "messageId", "userId/anonymousId", "event/name", "received")
    )
    remaining = limit
    while remaining is None or remaining > 0:
        page = store.read_events(
            after, 1000 if remaining is None else min(remaining, 1000), source_id, event_type
        )
        if not page:
            break
        for row in page:
            if table is None:
                out.write(row.body + b"\n")
            else:
                e = msgspec.json.decode(row.body)
                table.add_row(
                    str(row.seq),
                    e["type"],
                    e.get("messageId", ""),
                    e.get("userId") or e.get("anonymousId"),
                    e.get("event") or e.get("name") or "",
                    e.get("receivedAt", ""),
                )
        after = page[-1].seq
        if remaining is not None:
            remaining -= len(page)
    store.close()
    if table is not None:
        Console().print(table)


@main.command()
@data_dir_option
@click.option("--source", "source_name", metavar="NAME", help="Only this source's rejects.")
@click.option(
    "--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, with the refused payload.")
def rejects(data_dir: Path, source_name: str | None, limit: int, as_json: bool) -> None:
    """Print events and requests that were refused, oldest first, with the reason.

    Each refused event is kept here with its exact payload, so nothing a client sent
    disappears without a trace.
    """
    store = _open(data_dir)
    rows = store.read_rejects(0, limit, _source_filter(store, source_name))
    store.close()
    table = Table("seq", "route", "index", "code", "message")
    for r in rows:
        if as_json:
            payload: Any = r.body.decode("utf-8", "replace")
            with contextlib.suppress(msgspec.DecodeError):
                payload = msgspec.json.decode(r.body)
            click.echo(
                msgspec.json.encode(
                    {
                        "seq": r.seq,
                        "source_id": r.source_id,
                        "received_at_ms": r.received_at_ms,
                        "route": r.route,
                        "index": r.index,
                        "code": r.code,
                        "message": r.message,
                        "payload": payload,
                    }
                )
            )
        else:
            table.add_row(str(r.seq), r.route, "-" if r.index is None else str(r.index), r.code, r.message)
    if not as_json:
        Console().print(table)


main.add_command(send)
main.add_command(profiles)
main.add_command(accounts)

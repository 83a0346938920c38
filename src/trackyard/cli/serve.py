"""``trackyard serve``: run the collector."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

import click
from rich.console import Console

from trackyard import __version__
from trackyard.cli import _snippets
from trackyard.cli._options import data_dir_option
from trackyard.config import DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, Settings
from trackyard.http import server
from trackyard.storage.sqlite.store import SQLiteStore

_console = Console(stderr=True)


@click.command()
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
    help="Server log verbosity. At info, a one-line traffic summary every 10 s while there is traffic "
    "(TRACKYARD_TRAFFIC_SUMMARY_SECONDS; 0 turns it off).",
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
    existing = store.sources()
    first = None if existing else store.add_source("default")
    store.close()
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
    click.echo(
        f"trackyard {__version__} listening on {url} (data: {data_dir}, workers: {workers}, "
        f"durability: {durability})",
        err=False,
    )
    sys.stdout.flush()
    server.run(
        "trackyard.http.app:create_app_from_env", sock, workers=workers, log_level=log_level, factory=True
    )


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
    click.echo(f"{_snippets.sdks(url, write_key)}\n")
    # The curl example comes last, just above the "listening" line, where it is easiest to copy.
    click.echo(f"Send a first event:\n\n{_snippets.curl(url, write_key)}\n")

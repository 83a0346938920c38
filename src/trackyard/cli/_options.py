"""Options several command groups share (``trackyard`` itself and ``trackyard profiles``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trackyard.config import DEFAULT_DATA_DIR

F = TypeVar("F", bound=Callable[..., Any])

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    envvar="TRACKYARD_DATA_DIR",
    show_envvar=True,
    help="Directory holding trackyard's files: the embedded SQLite store, unless TRACKYARD_STORE "
    "names another place.",
)


def url_option(help: str) -> Callable[[F], F]:
    """``--url``: the server's base URL (``TRACKYARD_URL``), for commands that talk to or about it."""
    return click.option(
        "--url",
        default="http://127.0.0.1:8088",
        show_default=True,
        envvar="TRACKYARD_URL",
        show_envvar=True,
        help=help,
    )


log_level_option = click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    envvar="TRACKYARD_LOG_LEVEL",
    show_envvar=True,
    help="Log verbosity (the server's and the consumers'). At info, the server logs a one-line traffic "
    "summary every 10 s while there is traffic (TRACKYARD_TRAFFIC_SUMMARY_SECONDS; 0 turns it off).",
)

"""Options several command groups share (``trackyard`` itself and ``trackyard profiles``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trackyard.config import DEFAULT_DATA_DIR

F = TypeVar("F", bound=Callable[..., Any])

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    envvar="TRACKYARD_DATA_DIR",
    show_envvar=True,
    help="Directory holding trackyard's files: the embedded SQLite store, unless TRACKYARD_STORE "
    "names another place, or --state another backend.",
)

#: Where ``--log`` and ``--state`` are kept in the click context, for :func:`backend_urls`.
_URLS_KEY = "trackyard.backend_urls"


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    ctx.meta.setdefault(_URLS_KEY, {})[param.name] = value or None
    return value


_state = click.option(
    "--state",
    "state_url",
    metavar="URL",
    envvar="TRACKYARD_STATE",
    show_envvar=True,
    expose_value=False,
    callback=_remember,
    help="Where the state is kept (sources, dedup index, cursors, leases, rejects, dead letters, "
    "destinations, profiles). Unset: SQLite in --data-dir. postgresql://USER[:PASSWORD]@HOST/DB: "
    "PostgreSQL, shared by every node (docs/deployment.md).",
)
_log = click.option(
    "--log",
    "log_url",
    metavar="URL",
    envvar="TRACKYARD_LOG",
    show_envvar=True,
    expose_value=False,
    callback=_remember,
    help="Where the event log is. Unset: in the state backend. postgresql://...: a PostgreSQL log. "
    "nats://host:port[,host:port...]: a NATS JetStream stream, R3 when three or more servers are "
    "listed (docs/deployment.md).",
)


#: ``--data-dir`` alone, for a command whose other backends are named otherwise (``migrate``).
plain_data_dir_option = _data_dir


def data_dir_option(command: F) -> F:
    """``--data-dir``, ``--state`` and ``--log``: every command that opens the store takes all three."""
    return _data_dir(_state(_log(command)))


def backend_urls() -> tuple[str | None, str | None]:
    """The ``--state`` and ``--log`` URLs of the running command (or their variables)."""
    ctx = click.get_current_context(silent=True)
    urls: dict[str, str | None] = {} if ctx is None else ctx.meta.get(_URLS_KEY, {})
    return urls.get("state_url"), urls.get("log_url")


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

"""Opening the configured backends for a CLI command, with an error that says what to do."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from trackyard.cli._options import backend_urls
from trackyard.config import Settings, env_name
from trackyard.errors import StoreUnavailable
from trackyard.storage.base import StoreURLError
from trackyard.storage.factory import Backends, open_backends, store_exists


def cli_settings(data_dir: Path) -> Settings:
    """The settings a command other than ``serve`` needs: the data dir, ``TRACKYARD_STORE``, and
    ``--state`` and ``--log`` (or ``TRACKYARD_STATE`` and ``TRACKYARD_LOG``).

    Other ``TRACKYARD_*`` variables are the server's and are not read (nor validated) here.
    """
    state_url, log_url = backend_urls()
    return Settings(
        data_dir=data_dir,
        store_url=os.environ.get(env_name("store_url")) or None,
        state_url=state_url or os.environ.get(env_name("state_url")) or None,
        log_url=log_url or os.environ.get(env_name("log_url")) or None,
    )


@contextlib.contextmanager
def opened(data_dir: Path, *, create: bool = False, settings: Settings | None = None) -> Iterator[Backends]:
    """The backends, as a reader, closed on exit. Without ``create``, a missing store is an error.

    ``settings``: the server's (``trackyard store`` needs its retention and warehouse); by
    default only what :func:`cli_settings` reads."""
    settings = settings or cli_settings(data_dir)
    try:
        if not create and not store_exists(settings):
            if settings.state_url:
                raise click.ClickException(
                    "No trackyard store in that PostgreSQL database yet. Start a server on it first "
                    "(trackyard serve --state URL) or pass the right --state."
                )
            raise click.ClickException(
                f"No trackyard store in {data_dir}. Start the server there first (trackyard serve "
                f"--data-dir {data_dir}) or pass the right --data-dir."
            )
        backends = open_backends(settings)
    except (StoreURLError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield backends
    finally:
        backends.close()

"""``trackyard profiles`` and ``trackyard accounts``: look people and accounts up, rebuild."""

from __future__ import annotations

import click


@click.group()
def profiles() -> None:
    """Look up the people behind the events, and rebuild their profiles from the log."""


@click.group()
def accounts() -> None:
    """Look up accounts (Segment groups, Vitally accounts and organizations, Koala accounts)."""

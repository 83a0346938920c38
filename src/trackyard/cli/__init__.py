"""The ``trackyard`` command: run the server, manage sources, read what was stored.

Every command's ``--help`` is its documentation; ``docs/cli.md`` is generated from it
and a test keeps the two in step.
"""

from __future__ import annotations

import importlib

import click

from trackyard import __version__

#: Each command's module and attribute, imported when the command runs (or its help is
#: shown): ``serve`` then imports only what serving needs, not DuckDB, psycopg or NATS for
#: commands it does not run.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "consume": ("consume", "consume"),
    "consumers": ("consume", "consumers"),
    "sources": ("sources", "sources"),
    "events": ("log", "events"),
    "rejects": ("log", "rejects"),
    "send": ("send", "send"),
    "profiles": ("profiles", "profiles"),
    "accounts": ("profiles", "accounts"),
    "warehouse": ("warehouse", "warehouse"),
    "sql": ("warehouse", "sql"),
    "export": ("warehouse", "export"),
    "destinations": ("destinations", "destinations"),
    "migrate": ("migrate", "migrate_command"),
    "store": ("store", "store"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (listed by name, as click does)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"trackyard.cli.{module}"), attr)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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

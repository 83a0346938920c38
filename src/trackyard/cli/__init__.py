"""The ``trackyard`` command: run the server, manage sources, read what was stored.

Every command's ``--help`` is its documentation; ``docs/cli.md`` is generated from it
and a test keeps the two in step.
"""

from __future__ import annotations

import click

from trackyard import __version__
from trackyard.cli.consume import consume, consumers
from trackyard.cli.destinations import destinations
from trackyard.cli.log import events, rejects
from trackyard.cli.migrate import migrate_command
from trackyard.cli.profiles import accounts, profiles
from trackyard.cli.send import send
from trackyard.cli.serve import serve
from trackyard.cli.sources import sources
from trackyard.cli.store import store
from trackyard.cli.warehouse import export, sql, warehouse


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


for command in (
    serve,
    consume,
    consumers,
    sources,
    events,
    rejects,
    send,
    profiles,
    accounts,
    warehouse,
    sql,
    export,
    destinations,
    migrate_command,
    store,
):
    main.add_command(command)

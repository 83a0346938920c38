"""``trackyard profiles`` and ``trackyard accounts``: look people and accounts up, rebuild."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

from trackyard.cli._options import data_dir_option
from trackyard.cli._store import cli_settings, opened
from trackyard.profiles.consumer import catch_up, consumer_lock, status, wait_until_caught_up
from trackyard.profiles.facts import ACCOUNT, PERSON
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.views import ProfileViews, RefError

_json = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the HTTP API's answer) instead of text."
)
_ref = click.argument("ref", metavar="TYPE:VALUE")


@contextlib.contextmanager
def _open(data_dir: Path) -> Iterator[ProfileViews]:
    with opened(data_dir) as backends:
        yield ProfileViews(backends.log, backends.profiles(), ProfileSettings.from_env())


def _print(body: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(body) + b"\n")
        sys.stdout.flush()
        return
    for name, value in body.items():
        shown = value if isinstance(value, str | int | None) else msgspec.json.encode(value).decode()
        click.echo(f"{name}: {shown}")


def _lookup(views: ProfileViews, kind: str, ref: str) -> int:
    try:
        return views.find(kind, ref)
    except RefError as exc:
        raise click.ClickException(exc.cli_message) from None


@click.group()
def profiles() -> None:
    """Look up the people behind the events, and rebuild their profiles from the log.

    \b
    A person is named by any of their ids, TYPE:VALUE:
      user_id:u-1  anonymous_id:3e6a…  email:ann@example.com  registered:u-1  id:12
    Profiles are built from the event log by the profiles consumer, which `trackyard serve`
    runs (or `trackyard consume`); see `trackyard profiles status` for how far it has got.
    """


def _show_command(group: click.Group, kind: str, help: str) -> None:
    @group.command("show", help=help)
    @_ref
    @data_dir_option
    @_json
    def show(ref: str, data_dir: Path, as_json: bool) -> None:
        with _open(data_dir) as views:
            _print(views.summary(_lookup(views, kind, ref)), as_json)


_show_command(
    profiles, PERSON, "Print one person: ids, current traits, accounts, first and last seen, merges."
)


@profiles.command("traits")
@_ref
@click.option("--history", is_flag=True, help="Also print every value each trait had, oldest first.")
@data_dir_option
@_json
def profiles_traits(ref: str, history: bool, data_dir: Path, as_json: bool) -> None:
    """Print a person's traits with the time each was set (last write wins by event time)."""
    with _open(data_dir) as views:
        _print(views.traits(_lookup(views, PERSON, ref), history), as_json)


@profiles.command("events")
@_ref
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Events per page.")
@click.option(
    "--before",
    type=click.IntRange(min=1),
    metavar="SEQ",
    help="Start below this log position (the `next` of the previous page).  [default: the newest]",
)
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print canonical JSON, one event a line.")
def profiles_events(ref: str, limit: int, before: int | None, data_dir: Path, as_json: bool) -> None:
    """Print a person's events from every one of their ids, newest first."""
    with _open(data_dir) as views:
        page = views.events(_lookup(views, PERSON, ref), before, limit)
    for item in page["events"]:
        event = item["event"]
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(event) + b"\n")
        else:
            what = event.get("event") or event.get("name") or ""
            click.echo(f"{item['seq']}\t{event.get('timestamp', '')}\t{event.get('type')}\t{what}")
    sys.stdout.flush()
    if page["next"] is not None:
        click.echo(f"more: --before {page['next']}", err=True)


@profiles.command("status")
@data_dir_option
@_json
def profiles_status(data_dir: Path, as_json: bool) -> None:
    """Print the profile consumer's progress: its cursor, the log's head, the lag, counts and rules."""
    with _open(data_dir) as views:
        _print(status(views.log, views.profiles, cli_settings(data_dir), views.settings), as_json)


@profiles.command("rebuild")
@data_dir_option
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="When a consumer is running, wait until it has rebuilt everything.",
)
@click.option(
    "--timeout",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long --wait waits.",
)
def profiles_rebuild(data_dir: Path, wait: bool, timeout: float) -> None:
    """Forget every profile and build them again from the whole event log.

    Needed after changing a rule (TRACKYARD_PROFILES_* variables). With no consumer
    running it rebuilds here and now; with one running (under `trackyard serve` or
    `trackyard consume`), it asks that consumer to do it and waits. The result is the same
    as building them as the events arrived.
    """
    with opened(data_dir) as backends:
        log, profiles, rules = backends.log, backends.profiles(), ProfileSettings.from_env()
        with consumer_lock(backends.settings) as held:
            if held:
                profiles.reset()
                applied = catch_up(log, profiles, rules)
                click.echo(f"rebuilt profiles from {applied} events")
                return
        profiles.request_rebuild()
        if not wait:
            click.echo("asked the running server to rebuild the profiles")
            return
        done = wait_until_caught_up(log, profiles, backends.settings, timeout)
        if done["lag"] or done["rebuild_pending"]:
            raise click.ClickException(f"not finished after {timeout:g}s; see `trackyard profiles status`")
        click.echo(f"rebuilt profiles from {done['processed']} events")


@click.group()
def accounts() -> None:
    """Look up accounts (Segment groups, Vitally accounts and organizations, Koala accounts).

    \b
    An account is named by TYPE:VALUE or by its bare id, tried as each account id type:
      group_id:g-1  vitally_account_id:a-1  vitally_organization_id:o-1
      koala_account_id:k-1  domain:acme.com  id:7  acme.com
    """


_show_command(
    accounts,
    ACCOUNT,
    "Print one account: ids, traits, the organizations it belongs to, member count, merges.",
)


@accounts.command("members")
@_ref
@data_dir_option
@_json
def accounts_members(ref: str, data_dir: Path, as_json: bool) -> None:
    """Print an account's members: people, and accounts inside an organization."""
    with _open(data_dir) as views:
        members = views.members(_lookup(views, ACCOUNT, ref))
    if as_json:
        _print({"members": members}, True)
        return
    for member in members:
        ids = " ".join(f"{i['type']}:{i['value']}" for i in member["identities"])
        click.echo(f"{member['id']}\t{member['kind']}\t{member['since']}\t{ids}")

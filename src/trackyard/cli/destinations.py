"""``trackyard destinations``: deliver events onward to webhooks, Segment-compatible APIs, Koala,
Bloomreach and Vitally."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import msgspec

from trackyard.cli._options import data_dir_option
from trackyard.cli._progress import progress_bar
from trackyard.cli._store import cli_settings, opened
from trackyard.destinations import replay
from trackyard.destinations.kinds.webhook import DEFAULT_WEBHOOK_BATCH, MAX_WEBHOOK_BATCH
from trackyard.destinations.status import iso, outstanding, requests_line, status
from trackyard.destinations.validation import InvalidDestination, check
from trackyard.event import EVENT_TYPES
from trackyard.storage.destinations import (
    KINDS,
    Destination,
    DestinationExists,
    DestinationRegistry,
    NoSuchDestination,
)
from trackyard.storage.factory import Backends, destinations_exist, open_destinations


@click.group()
def destinations() -> None:
    """Deliver every stored event onward: to a webhook, a Segment-compatible API, Koala,
    Bloomreach or Vitally (any format in, any out).

    Each destination is a consumer of its own (destination:NAME, in a process of its
    own, with its own cursor), so one that is down, slow or crashing never delays another.
    `trackyard serve` delivers to every enabled destination; changes apply within a second,
    without a restart (docs/destinations.md).
    """


@contextmanager
def _registry(data_dir: Path, name: str | None = None) -> Iterator[tuple[Backends, DestinationRegistry]]:
    """The backends and the registry; for a ``name``, an error when there is no registry at
    all (not opened, so not created: its existence starts the delivery consumer)."""
    settings = cli_settings(data_dir)
    if name is not None and not destinations_exist(settings):
        raise click.ClickException(f"No destination named {name!r} (see: trackyard destinations list).")
    with opened(data_dir) as backends:
        registry = open_destinations(settings)
        try:
            yield backends, registry
        finally:
            registry.close()


def _check(destination: Destination) -> None:
    try:
        check(destination)
    except InvalidDestination as error:
        hint = "NAME" if error.field == "name" else "--" + error.field.replace("_", "-")
        raise click.BadParameter(str(error), param_hint=hint) from None


def _get(registry: DestinationRegistry, name: str) -> Destination:
    try:
        return registry.get(name)
    except NoSuchDestination:
        raise click.ClickException(
            f"No destination named {name!r} (see: trackyard destinations list)."
        ) from None


def _header(value: str) -> tuple[str, str]:
    name, sep, text = value.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
    return name.strip(), text.strip()


@destinations.command("add")
@click.argument("name")
@click.option(
    "--format",
    "kind",
    required=True,
    type=click.Choice(KINDS),
    help="webhook: JSON POSTed to --url. segment: Segment's HTTP Tracking API (/v1/batch under --url). "
    "koala, bloomreach, vitally: each event encoded into that vendor's batch API under --url "
    "(events it cannot express are skipped, see `destinations skipped`).",
)
@click.option(
    "--url",
    required=True,
    help="For webhook, the URL posted to; otherwise the API's base URL (e.g. https://api.segment.io, "
    "https://api2.getkoala.com, https://api.exponea.com, https://SUBDOMAIN.api.vitally.io, "
    "or another trackyard).",
)
@click.option(
    "--key",
    help="What the API identifies you by: the Segment write key, the Koala public project key, the "
    "Bloomreach project token, the Vitally token. Needed by all but webhook.",
)
@click.option(
    "--secret",
    help="For webhook, the signing secret (X-Signature is the hex HMAC-SHA1 of the body); for "
    "bloomreach, the API secret (Basic auth; without it the public Token auth is used).",
)
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="Send this header too.")
@click.option("--source", "sources", multiple=True, help="Only events of this source (repeatable).")
@click.option(
    "--type", "types", multiple=True, type=click.Choice(sorted(EVENT_TYPES)), help="Only this type."
)
@click.option("--event", "events", multiple=True, help="Only track events of this name (repeatable).")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_WEBHOOK_BATCH),
    default=DEFAULT_WEBHOOK_BATCH,
    show_default=True,
    help="webhook: events a request (1 posts each event alone, more a JSON array). The other formats "
    "use their API's own limits.",
)
@click.option(
    "--no-order",
    is_flag=True,
    help="Do not keep per-user order: a failing request's events are parked and retried while "
    "the events after them go on (they arrive late). By default a retry holds back what follows.",
)
@data_dir_option
def destinations_add(
    name: str,
    kind: str,
    url: str,
    key: str | None,
    secret: str | None,
    headers: tuple[str, ...],
    sources: tuple[str, ...],
    types: tuple[str, ...],
    events: tuple[str, ...],
    batch_size: int,
    no_order: bool,
    data_dir: Path,
) -> None:
    """Add destination NAME; a running `trackyard serve` starts delivering to it within a second.

    NAME: letters, digits, '-', '_' and '.'. The key and secret are stored for sending
    and never printed again. Delivery starts at the beginning of the log: every event
    stored so far is sent, then each new one.
    """
    destination = Destination(
        name=name,
        kind=kind,
        url=url,
        key=key,
        secret=secret,
        headers=tuple(_header(h) for h in headers),
        sources=sources,
        types=types,
        events=events,
        batch_size=batch_size,
        ordered=not no_order,
    )
    _check(destination)
    with opened(data_dir, create=True):
        registry = open_destinations(cli_settings(data_dir))
        try:
            registry.add(destination)
        except DestinationExists:
            raise click.ClickException(f"A destination named {name!r} exists already.") from None
        finally:
            registry.close()
    click.echo(f"added destination {name} ({kind} to {url})")


@destinations.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a destination and line.")
@data_dir_option
def destinations_list(as_json: bool, data_dir: Path) -> None:
    """List destinations with their state (keys and secrets only as set or not)."""
    if not destinations_exist(cli_settings(data_dir)):
        return
    with _registry(data_dir) as (backends, registry):
        rows = [status(backends, registry, d) for d in registry.destinations()]
    for row in rows:
        if as_json:
            click.echo(msgspec.json.encode(row))
        else:
            state = "enabled" if row["enabled"] else "disabled"
            click.echo(
                f"{row['name']}: {row['format']} to {row['url']}, {state}, "
                f"lag {row['lag']} ({row['lag_seconds']:.1f}s), retrying {row['retrying']['events']}, "
                f"dead {row['dead']}"
            )


@destinations.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@data_dir_option
def destinations_show(name: str, as_json: bool, data_dir: Path) -> None:
    """Show destination NAME: its settings (never its secrets) and how delivery goes.

    \b
    delivered      events delivered so far
    retrying       events in retry now (the request in hand, or parked when unordered),
                   and the most attempts among them
    requests       requests sent, by the answer's class (2xx, 3xx, 4xx, 5xx) or why
                   there was none (timeout, connection, error), with the events they
                   carried and how many were retries
    retries        attempts after a request's first, in all
    dead           dead letters not replayed yet (see `destinations dead NAME`)
    lag            events behind the log's head, and seconds: the age of the oldest
                   event not delivered yet (now - its receivedAt)
    last error     when, the request (URL, events, seqs, bytes), the answer (truncated)
    """
    with _registry(data_dir, name) as (backends, registry):
        row = status(backends, registry, _get(registry, name))
    if as_json:
        click.echo(msgspec.json.encode(row))
        return
    error = row.pop("last_error")
    retrying = row.pop("retrying")
    row["requests"] = requests_line(row["requests"])
    row["ordered"] = "per-user order kept" if row["ordered"] else "unordered (retries parked)"
    row["lag"] = f"{row['lag']} events, {row.pop('lag_seconds'):.1f}s"
    row["retrying"] = f"{retrying['events']} events ({retrying['attempts']} attempts at most)"
    for field, value in row.items():
        click.echo(f"{field}: {value}")
    if error is None:
        click.echo("last error: none")
    else:
        click.echo(f"last error: at {error['at']}")
        if error["request"]:
            click.echo(f"  request: {error['request']}")
        click.echo(f"  answer: {error['response']}")


@destinations.command("dead")
@click.argument("name")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object a dead letter and line, the event included."
)
@data_dir_option
def destinations_dead(name: str, as_json: bool, data_dir: Path) -> None:
    """Print destination NAME's dead letters not yet replayed, oldest first, with why.

    The reason holds the status (or connection error), the response body (truncated), the
    attempts and the time of the last.
    """
    with _registry(data_dir, name) as (backends, registry):
        letters = outstanding(backends, _get(registry, name))
    for letter in letters:
        row = {
            "id": letter.id,
            "seq": letter.seq,
            "type": letter.type,
            "reason": letter.reason,
            "attempts": letter.attempts,
            "failed_at": iso(letter.failed_at_ms),
        }
        if as_json:
            click.echo(msgspec.json.encode({**row, "event": msgspec.json.decode(letter.body)}))
        else:
            click.echo(f"{row['id']} seq {row['seq']} {row['type']} at {row['failed_at']}: {row['reason']}")


@destinations.command("skipped")
@click.argument("name")
@click.option("--after", type=click.IntRange(min=0), default=0, metavar="SEQ", help="Only after this seq.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a skipped event and line.")
@data_dir_option
def destinations_skipped(name: str, after: int, limit: int, as_json: bool, data_dir: Path) -> None:
    """Print the events NAME did not send because its format cannot express them, with why.

    A skip is not a failure: nothing is retried or dead-lettered (a `screen` call to
    Vitally stays a screen call). `destinations show` counts them by reason; `trackyard
    events` shows an event by its seq.
    """
    with _registry(data_dir, name) as (_, registry):
        _get(registry, name)
        skips = registry.skipped(name, after=after, limit=limit)
    for skip in skips:
        row = {
            "seq": skip.seq,
            "type": skip.type,
            "reason": skip.reason,
            "skipped_at": iso(skip.skipped_at_ms),
        }
        if as_json:
            click.echo(msgspec.json.encode(row))
        else:
            click.echo(f"seq {row['seq']} {row['type']} at {row['skipped_at']}: {row['reason']}")


@destinations.command("replay")
@click.argument("name")
@click.option("--dead", is_flag=True, help="Re-send the dead letters not replayed yet.")
@click.option(
    "--since",
    metavar="TIME",
    help="Re-send every event received at or after TIME: ISO-8601 (2026-12-01T10:00:00Z; UTC "
    "without an offset) or relative to now (30m, 2h, 1d).",
)
@click.option(
    "--after", type=click.IntRange(min=0), metavar="SEQ", help="Re-send every event after this seq."
)
@data_dir_option
def destinations_replay(name: str, dead: bool, since: str | None, after: int | None, data_dir: Path) -> None:
    """Re-send events to destination NAME now, from this process, with a summary at the end.

    It runs beside the server's delivery, which goes on at its own cursor. Events that fail
    again go back to the dead letters. Receivers that dedup by messageId store each once.
    --since finds the first event received at or after TIME by a binary search on seq
    (receivedAt grows with seq), then re-sends from there up to the log's head.
    """
    if sum((dead, since is not None, after is not None)) != 1:
        raise click.UsageError("Give exactly one of --dead, --since TIME or --after SEQ.")
    with _registry(data_dir, name) as (backends, registry):
        destination = _get(registry, name)
        if dead:
            plan = replay.plan_dead(backends, destination)
        elif since is not None:
            try:
                moment = replay.parse_since(since)
            except replay.BadTime as error:
                raise click.BadParameter(str(error), param_hint="--since") from None
            first = replay.first_seq_since(backends, moment)
            click.echo(f"first event received at or after {moment.isoformat()}: seq {first}", err=True)
            plan = replay.plan_after(backends, first - 1)
        else:
            assert after is not None
            plan = replay.plan_after(backends, after)
        with progress_bar() as progress:
            task = progress.add_task(f"replaying to {name}", total=plan.total)
            summary = replay.run(backends, registry, destination, plan, lambda n: progress.advance(task, n))
    click.echo(
        f"replayed to {name}: {summary.delivered} delivered, {summary.dead} dead-lettered, "
        f"{summary.filtered} filtered out or skipped, in {summary.seconds:.1f}s"
    )


def _set_enabled(name: str, data_dir: Path, enabled: bool) -> None:
    with _registry(data_dir, name) as (_, registry):
        try:
            registry.set_enabled(name, enabled)
        except NoSuchDestination:
            raise click.ClickException(f"No destination named {name!r}.") from None
    click.echo(f"{'enabled' if enabled else 'disabled'} destination {name}")


@destinations.command("disable")
@click.argument("name")
@data_dir_option
def destinations_disable(name: str, data_dir: Path) -> None:
    """Stop delivering to NAME; its cursor stays, so `enable` goes on where it stopped."""
    _set_enabled(name, data_dir, False)


@destinations.command("enable")
@click.argument("name")
@data_dir_option
def destinations_enable(name: str, data_dir: Path) -> None:
    """Deliver to NAME again, from where it stopped."""
    _set_enabled(name, data_dir, True)


@destinations.command("update")
@click.argument("name")
@click.option("--url", help="The new URL (webhook) or base URL.")
@click.option("--key", help="The new key (stored, never printed).")
@click.option("--secret", help="The new secret (stored, never printed).")
@click.option("--batch-size", type=click.IntRange(1, MAX_WEBHOOK_BATCH), help="webhook: events a request.")
@click.option(
    "--order/--no-order",
    "ordered",
    default=None,
    help="Keep per-user order (a retry holds back what follows), or not (retries are parked).",
)
@data_dir_option
def destinations_update(
    name: str,
    url: str | None,
    key: str | None,
    secret: str | None,
    batch_size: int | None,
    ordered: bool | None,
    data_dir: Path,
) -> None:
    """Change destination NAME; its process restarts with the change within a second.

    The cursor, the dead letters and the counts stay. Options not given stay as they are.
    """
    given = {"url": url, "key": key, "secret": secret, "batch_size": batch_size, "ordered": ordered}
    changes: dict[str, Any] = {field: value for field, value in given.items() if value is not None}
    if not changes:
        raise click.UsageError(
            "Nothing to change: give --url, --key, --secret, --batch-size or --[no-]order."
        )
    with _registry(data_dir, name) as (_, registry):
        changed = dataclasses.replace(_get(registry, name), **changes)
        _check(changed)
        registry.update(changed)
    click.echo(f"updated destination {name}: {', '.join(sorted(changes))}")


@destinations.command("remove")
@click.argument("name")
@data_dir_option
def destinations_remove(name: str, data_dir: Path) -> None:
    """Remove NAME and its credentials; its process stops within a second.

    Its dead letters stay, under destination:NAME; its parked retries (unordered) go.
    """
    with _registry(data_dir, name) as (_, registry):
        _get(registry, name)
        registry.remove(name)
    click.echo(f"removed destination {name}")

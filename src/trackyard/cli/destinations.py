"""``trackyard destinations``: deliver events onward to webhooks and Segment-compatible APIs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from trackyard.cli._options import data_dir_option
from trackyard.cli._store import cli_settings, opened
from trackyard.consumers.runner import StopFlag
from trackyard.destinations.consumer import open_sink
from trackyard.destinations.requests import DEFAULT_WEBHOOK_BATCH, MAX_WEBHOOK_BATCH
from trackyard.event import EVENT_TYPES
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import (
    KINDS,
    PLANNED_KINDS,
    Destination,
    DestinationExists,
    DestinationRegistry,
    NoSuchDestination,
)
from trackyard.storage.factory import Backends, destinations_exist, open_destinations

#: Where ``replay --dead`` notes the last dead letter it re-sent (a cursor, beside the destination's).
_REPLAYED = ":replayed-dead"
_REPLAY_CHUNK = 500


@click.group()
def destinations() -> None:
    """Deliver every stored event onward: to a webhook, or to a Segment-compatible API.

    Each destination has its own cursor on the log, so one that is down never delays
    another. `trackyard serve` delivers to every enabled destination (docs/destinations.md).
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
    type=click.Choice(KINDS + PLANNED_KINDS),
    help="webhook: JSON POSTed to --url. segment: Segment's HTTP Tracking API (/v1/batch under --url). "
    "koala, bloomreach and vitally are planned and refused for now.",
)
@click.option("--url", required=True, help="For webhook, the URL posted to; otherwise the API's base URL.")
@click.option("--key", help="What the API identifies you by: for segment, the write key (Basic auth).")
@click.option(
    "--secret", help="For webhook, the signing secret: X-Signature is the hex HMAC-SHA1 of the body."
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
    help="webhook: events a request (1 posts each event alone, more a JSON array).",
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
    data_dir: Path,
) -> None:
    """Add destination NAME; `trackyard serve` starts delivering to it.

    The key and secret are stored for sending and never printed again. The first
    destination of a data dir starts with the next `trackyard serve`; later ones, and
    changes, are picked up by the running server within a second.
    """
    if kind in PLANNED_KINDS:
        raise click.ClickException(
            f"The {kind} format is planned and not available yet; use webhook or segment."
        )
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
    if kind == "segment" and not key:
        raise click.BadParameter("the segment format needs the receiver's write key", param_hint="--key")
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
    )
    with opened(data_dir, create=True):
        registry = open_destinations(cli_settings(data_dir))
        try:
            registry.add(destination)
        except DestinationExists:
            raise click.ClickException(f"A destination named {name!r} exists already.") from None
        finally:
            registry.close()
    click.echo(f"added destination {name} ({kind} to {url})")


def _status(backends: Backends, registry: DestinationRegistry, destination: Destination) -> dict[str, Any]:
    cursor = backends.cursors().get(destination.consumer)
    delivered, error, error_at = registry.status(destination.name)
    return {
        **destination.public(),
        "cursor": cursor,
        "lag": max(backends.log.head_seq() - cursor, 0),
        "delivered": delivered,
        "dead": len(_outstanding(backends, destination)),
        "last_error": error,
        "last_error_at": None if error_at is None else _iso(error_at),
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _outstanding(backends: Backends, destination: Destination) -> list[Any]:
    """Dead letters not yet replayed."""
    after = backends.cursors().get(destination.consumer + _REPLAYED)
    return backends.dead_letters().read(destination.consumer, after=after, limit=1_000_000)


@destinations.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a destination and line.")
@data_dir_option
def destinations_list(as_json: bool, data_dir: Path) -> None:
    """List destinations with their state (keys and secrets only as set or not)."""
    if not destinations_exist(cli_settings(data_dir)):
        return
    with _registry(data_dir) as (backends, registry):
        rows = [_status(backends, registry, d) for d in registry.destinations()]
    for row in rows:
        if as_json:
            click.echo(msgspec.json.encode(row))
        else:
            state = "enabled" if row["enabled"] else "disabled"
            click.echo(
                f"{row['name']}: {row['format']} to {row['url']}, {state}, "
                f"lag {row['lag']}, dead {row['dead']}"
            )


@destinations.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@data_dir_option
def destinations_show(name: str, as_json: bool, data_dir: Path) -> None:
    """Show destination NAME: delivered, dead, lag (events behind the log's head), last error."""
    with _registry(data_dir, name) as (backends, registry):
        row = _status(backends, registry, _get(registry, name))
    if as_json:
        click.echo(msgspec.json.encode(row))
        return
    for field, value in row.items():
        click.echo(f"{field}: {value}")


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
        letters = _outstanding(backends, _get(registry, name))
    for letter in letters:
        row = {
            "id": letter.id,
            "seq": letter.seq,
            "type": letter.type,
            "reason": letter.reason,
            "attempts": letter.attempts,
            "failed_at": _iso(letter.failed_at_ms),
        }
        if as_json:
            click.echo(msgspec.json.encode({**row, "event": msgspec.json.decode(letter.body)}))
        else:
            click.echo(f"{row['id']} seq {row['seq']} {row['type']} at {row['failed_at']}: {row['reason']}")


@destinations.command("replay")
@click.argument("name")
@click.option("--dead", is_flag=True, help="Re-send the dead letters not replayed yet.")
@click.option(
    "--after", type=click.IntRange(min=0), metavar="SEQ", help="Re-send every event after this seq."
)
@data_dir_option
def destinations_replay(name: str, dead: bool, after: int | None, data_dir: Path) -> None:
    """Re-send events to destination NAME now, from this process, with a summary at the end.

    It runs beside the server's delivery, which goes on at its own cursor. Events that fail
    again go back to the dead letters. Receivers that dedup by messageId store each once.
    """
    if dead == (after is not None):
        raise click.UsageError("Give exactly one of --dead or --after SEQ.")
    started = time.monotonic()
    with _registry(data_dir, name) as (backends, registry):
        destination = _get(registry, name)
        sink = open_sink(backends, registry, destination, StopFlag())
        delivered = failed = 0
        try:
            if dead:
                letters = _outstanding(backends, destination)
                if letters:  # noted first: what fails again is added after it
                    backends.cursors().commit(destination.consumer + _REPLAYED, letters[-1].id)
                batches: Iterable[list[StoredEvent]] = [
                    [StoredEvent(x.seq, x.source_id, x.type, x.body) for x in letters[i : i + _REPLAY_CHUNK]]
                    for i in range(0, len(letters), _REPLAY_CHUNK)
                ]
                total = len(letters)
            else:
                assert after is not None
                head = backends.log.head_seq()
                total = max(head - after, 0)
                batches = _log_batches(backends, after, head)
            progress: Any = click.progressbar(length=total, label=f"replaying to {name}", file=sys.stderr)
            with progress as bar:
                for batch in batches:
                    ok, bad = sink.send_now(batch)
                    delivered, failed = delivered + ok, failed + bad
                    bar.update(len(batch))
        finally:
            sink.close()
    click.echo(
        f"replayed to {name}: {delivered} delivered, {failed} dead-lettered, "
        f"{total - delivered - failed} filtered out, in {time.monotonic() - started:.1f}s"
    )


def _log_batches(backends: Backends, after: int, head: int) -> Iterator[list[StoredEvent]]:
    while after < head:
        batch = [e for e in backends.log.read_events(after=after, limit=_REPLAY_CHUNK) if e.seq <= head]
        if not batch:
            return
        yield batch
        after = batch[-1].seq


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


@destinations.command("remove")
@click.argument("name")
@data_dir_option
def destinations_remove(name: str, data_dir: Path) -> None:
    """Remove NAME and its credentials (its dead letters stay, under destination:NAME)."""
    with _registry(data_dir, name) as (_, registry):
        _get(registry, name)
        registry.remove(name)
    click.echo(f"removed destination {name}")


#: One destination's status row and its dead letters not yet replayed, as ``list``, ``show`` and
#: ``dead`` print them; the console's destinations page shows the same (trackyard.console).
status_row = _status
outstanding_dead_letters = _outstanding

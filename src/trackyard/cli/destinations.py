"""``trackyard destinations``: deliver events onward to webhooks, Segment-compatible APIs, Koala,
Bloomreach and Vitally."""

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
from trackyard.destinations.kinds.webhook import DEFAULT_WEBHOOK_BATCH, MAX_WEBHOOK_BATCH
from trackyard.event import EVENT_TYPES
from trackyard.storage.base import StoredEvent
from trackyard.storage.destinations import (
    KINDS,
    Destination,
    DestinationExists,
    DestinationRegistry,
    NoSuchDestination,
)
from trackyard.storage.factory import Backends, destinations_exist, open_destinations

#: What ``--key`` is, by format.
_KEY_NAMES = {
    "segment": "the receiver's write key",
    "koala": "the Koala public project key",
    "bloomreach": "the Bloomreach project token",
    "vitally": "the Vitally token",
}
#: Where ``replay --dead`` notes the last dead letter it re-sent (a cursor, beside the destination's).
_REPLAYED = ":replayed-dead"
_REPLAY_CHUNK = 500


@click.group()
def destinations() -> None:
    """Deliver every stored event onward: to a webhook, a Segment-compatible API, Koala,
    Bloomreach or Vitally (any format in, any out).

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
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
    if kind != "webhook" and not key:
        raise click.BadParameter(f"the {kind} format needs {_KEY_NAMES[kind]}", param_hint="--key")
    if secret and kind not in ("webhook", "bloomreach"):
        raise click.BadParameter(
            f"the {kind} format takes no secret (only webhook and bloomreach do)", param_hint="--secret"
        )
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
    skips = registry.skip_counts(destination.name)
    return {
        **destination.public(),
        "cursor": cursor,
        "lag": max(backends.log.head_seq() - cursor, 0),
        "delivered": delivered,
        "dead": len(_outstanding(backends, destination)),
        "skipped": sum(skips.values()),
        "skipped_by_reason": skips,
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
            "skipped_at": _iso(skip.skipped_at_ms),
        }
        if as_json:
            click.echo(msgspec.json.encode(row))
        else:
            click.echo(f"seq {row['seq']} {row['type']} at {row['skipped_at']}: {row['reason']}")


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
        f"{total - delivered - failed} filtered out or skipped, in {time.monotonic() - started:.1f}s"
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

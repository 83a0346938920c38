"""``trackyard events`` and ``trackyard rejects``: read what was stored and what was refused."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from trackyard.cli._options import data_dir_option
from trackyard.cli._store import opened
from trackyard.event import EVENT_TYPES
from trackyard.storage.base import SourceRegistry, StoredEvent

_console = Console(stderr=True)


def _source_filter(registry: SourceRegistry, name: str | None) -> int | None:
    if name is None:
        return None
    source = registry.source_by_name(name)
    if source is None:
        raise click.ClickException(f"No source named {name!r}. See: trackyard sources list.")
    return source.id


def _envelope(row: StoredEvent) -> bytes:
    # Built around the stored bytes: the canonical event is printed exactly as stored.
    return b'{"seq":%d,"event":%b}\n' % (row.seq, row.body)


def _line(row: StoredEvent) -> list[str]:
    e = msgspec.json.decode(row.body)
    return [
        str(row.seq),
        e["type"],
        e.get("messageId", ""),
        e.get("userId") or e.get("anonymousId") or "",
        e.get("event") or e.get("name") or "",
        e.get("receivedAt", ""),
    ]


_COLUMNS = ("seq", "type", "messageId", "userId/anonymousId", "event/name", "received")


@click.command()
@data_dir_option
@click.option("--source", "source_name", metavar="NAME", help="Only this source's events.")
@click.option(
    "--type", "event_type", type=click.Choice(sorted(EVENT_TYPES)), help="Only events of this type."
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=1), help="At most this many events.  [default: all]"
)
@click.option(
    "--after",
    default=0,
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Start after this position in the log (the seq of the last event you read).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print canonical JSON, one event a line (for jq and scripts)."
)
@click.option(
    "--with-seq",
    is_flag=True,
    help='With --json, print each event inside {"seq": N, "event": {...}}, so a script can '
    "resume with --after N.",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep running and print new events as they are stored, like tail -f; Ctrl-C stops.",
)
@click.option(
    "--interval",
    default=0.25,
    show_default=True,
    type=click.FloatRange(min=0.01),
    metavar="SECONDS",
    help="With --follow, how often to look for new events.",
)
def events(
    data_dir: Path,
    source_name: str | None,
    event_type: str | None,
    limit: int | None,
    after: int,
    as_json: bool,
    with_seq: bool,
    follow: bool,
    interval: float,
) -> None:
    """Print stored events, oldest first, in the canonical shape (the Segment Spec).

    Safe to run while the server is running. To follow the log from a script, use
    --json --with-seq and keep the last seq: --after SEQ resumes right after it, and
    --follow keeps printing events as they arrive.
    """
    if with_seq and not as_json:
        raise click.UsageError("--with-seq goes with --json.")
    with opened(data_dir) as backends:
        source_id = _source_filter(backends.sources, source_name)
        out = sys.stdout.buffer
        table = None if as_json or follow else Table(*_COLUMNS)
        if follow:
            # A follower ends with Ctrl-C, even when started with SIGINT ignored (in the background).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if not as_json:
                click.echo("\t".join(_COLUMNS))
        remaining = limit
        try:
            while remaining is None or remaining > 0:
                head = backends.log.head_seq() if follow else 0
                page = backends.log.read_events(
                    after, 1000 if remaining is None else min(remaining, 1000), source_id, event_type
                )
                if not page:
                    if not follow:
                        break
                    # Nothing up to the head matched the filters: the next poll starts past it
                    # instead of scanning the same events again. Later commits get larger seqs.
                    after = max(after, head)
                    time.sleep(interval)
                    continue
                for row in page:
                    if table is not None:
                        table.add_row(*_line(row))
                    elif not as_json:
                        out.write("\t".join(_line(row)).encode() + b"\n")
                    else:
                        out.write(_envelope(row) if with_seq else row.body + b"\n")
                out.flush()
                after = page[-1].seq
                if remaining is not None:
                    remaining -= len(page)
        except KeyboardInterrupt:
            pass  # the way to stop --follow: a clean end, exit status 0
        except BrokenPipeError:
            # The reader went away (| head -n 5): stop quietly, as tail does, with nothing left
            # for Python to fail flushing at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if table is not None:
            Console().print(table)


@click.command()
@data_dir_option
@click.option("--source", "source_name", metavar="NAME", help="Only this source's rejects.")
@click.option(
    "--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, with the refused payload.")
def rejects(data_dir: Path, source_name: str | None, limit: int, as_json: bool) -> None:
    """Print events and requests that were refused, oldest first, with the reason.

    Every request refused once its write key is known is kept here, in all four formats:
    bad JSON, a malformed or oversized batch, a body over a limit, an invalid event. Each
    has its route, batch index, code, message and payload: the bytes sent, any writeKey
    redacted, at most the first 64 KiB (a longer one is cut, and its message gives its
    size). A body refused before it was read to the end (over a limit, bad gzip) has an
    empty payload. 429 and 503 refusals are not kept.

    A request refused for its key (unknown, of a disabled source, a wrong secret) is kept
    without a source (source_id 0) and without its body: its payload is the key's
    fingerprint (first 4 characters and a hash, never the key) and the client's IP. Those
    are sampled, since anyone can send them: at most one per client and key every 10 s,
    and 60 a minute per worker (docs/security.md).
    """
    with opened(data_dir) as backends:
        rows = backends.rejects.read_rejects(0, limit, _source_filter(backends.sources, source_name))
    table = Table("seq", "route", "index", "code", "message")
    for r in rows:
        if as_json:
            payload: Any = r.body.decode("utf-8", "replace")
            with contextlib.suppress(msgspec.DecodeError):
                payload = msgspec.json.decode(r.body)
            click.echo(
                msgspec.json.encode(
                    {
                        "seq": r.seq,
                        "source_id": r.source_id,
                        "received_at_ms": r.received_at_ms,
                        "route": r.route,
                        "index": r.index,
                        "code": r.code,
                        "message": r.message,
                        "payload": payload,
                    }
                )
            )
        else:
            table.add_row(str(r.seq), r.route, "-" if r.index is None else str(r.index), r.code, r.message)
    if not as_json:
        Console().print(table)

"""``trackyard migrate``: copy the embedded SQLite store into PostgreSQL (and JetStream).

What is copied, in this order: the sources (ids, write keys, secret hashes, limits), the
destinations, the event log (seqs kept, so every cursor stays valid, with each event's
dedup key, so a retry of an event sent before the move is still caught), the profiles
(with the profile consumer's cursor), and the other consumers' cursors. The state goes to
PostgreSQL; the log to PostgreSQL too, or to a JetStream stream (``--to-log nats://``),
where each event is published to land at its own seq (the stream seq is the log seq) or
the copy stops. A JetStream log therefore starts empty or as an earlier copy of this one,
and the SQLite log must start at seq 1 (every event since the store was made).

Idempotent and resumable: what the target has already is skipped (the log resumes after
the target's head), so a run that was interrupted, or a second run after more events
arrived, copies only what is missing. Stop the servers on the SQLite store before the last
run, then start them with ``--state`` (and ``--log``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from trackyard.config import Settings
from trackyard.storage.base import dedup_key
from trackyard.storage.factory import destinations_exist, open_backends, open_destinations, store_exists
from trackyard.storage.nats.log import JetStreamLog
from trackyard.storage.postgres.log import PGLog
from trackyard.storage.postgres.profiles import PGProfiles
from trackyard.storage.postgres.state import PGSources
from trackyard.storage.sqlite.consumers import read_cursors
from trackyard.storage.sqlite.store import SQLiteStore

#: Events read and written per transaction.
PAGE = 5000

#: ``progress(step, done, total)``: called as each step advances.
ProgressCallback = Callable[[str, int, int], None]


class MigrationError(Exception):
    """The target holds something that does not come from this store; the message says what."""


@dataclass
class MigrationReport:
    sources: int = 0
    destinations: int = 0
    events: int = 0
    profiles_copied: bool = False
    cursors: int = 0


class _Ids(msgspec.Struct):
    """The two fields of a canonical event the copy needs."""

    messageId: str = ""
    receivedAt: str = ""


_decode_ids = msgspec.json.Decoder(_Ids).decode


def _epoch_ms(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return 0


def migrate(source: Settings, target: Settings, progress: ProgressCallback) -> MigrationReport:
    """Copy the SQLite store ``source`` names into the PostgreSQL ``target`` (``state_url``, ``log_url``)."""
    if source.state_url or source.log_url:
        raise MigrationError("the source of a migration is the SQLite store in a data dir")
    if not target.state_url:
        raise MigrationError("name the PostgreSQL state to migrate to (--to-state postgresql://...)")
    if not store_exists(source):
        raise MigrationError(f"no trackyard store in {source.data_dir}")
    report = MigrationReport()
    src = open_backends(source)
    dst = open_backends(target)
    try:
        assert isinstance(src.log, SQLiteStore)
        assert isinstance(dst.sources, PGSources) and isinstance(dst.log, PGLog | JetStreamLog)
        _sources(src.log, dst.sources, report, progress)
        _destinations(source, target, report, progress)
        _log(src.log, dst.log, report, progress)
        if (source.data_dir / "profiles.db").exists() or src.profiles().progress().cursor:
            profiles = dst.profiles()
            assert isinstance(profiles, PGProfiles)
            report.profiles_copied = _profiles(src.profiles().snapshot(), profiles, progress)
        cursors = read_cursors(source.data_dir)
        for done, (name, cursor) in enumerate(sorted(cursors.items()), 1):
            if dst.cursors().get(name) < cursor:
                dst.cursors().commit(name, cursor)
                report.cursors += 1
            progress("cursors", done, len(cursors))
    finally:
        src.close()
        dst.close()
    return report


def _sources(src: SQLiteStore, dst: PGSources, report: MigrationReport, progress: ProgressCallback) -> None:
    sources = src.sources()
    for done, source in enumerate(sources, 1):
        if dst.insert_source(source):
            report.sources += 1
        elif dst.source_by_name(source.name) != source:
            raise MigrationError(
                f"the target already has a different source named {source.name!r} (or one with its id or "
                "write key): migrate into an empty database, or remove it there first"
            )
        progress("sources", done, len(sources))


def _destinations(
    source: Settings, target: Settings, report: MigrationReport, progress: ProgressCallback
) -> None:
    if not destinations_exist(source):
        return
    src, dst = open_destinations(source), open_destinations(target)
    try:
        have = {d.name for d in dst.destinations()}
        wanted = src.destinations()
        for done, destination in enumerate(wanted, 1):
            if destination.name not in have:
                dst.add(destination)
                report.destinations += 1
            progress("destinations", done, len(wanted))
    finally:
        src.close()
        dst.close()


def _log(
    src: SQLiteStore, dst: PGLog | JetStreamLog, report: MigrationReport, progress: ProgressCallback
) -> None:
    head, start = src.head_seq(), dst.head_seq()
    if start > head:
        raise MigrationError(
            f"the target's log is longer ({start:,} events) than this store's ({head:,}): "
            "it holds events that do not come from here"
        )
    if start and not _same_event(src, dst, start):
        raise MigrationError(
            f"the target's log holds other events (its event {start:,} is not this store's): "
            "migrate into an empty log, or into an earlier copy of this store"
        )
    after = start
    progress("events", after, head)
    while after < head:
        page = src.read_events(after=after, limit=PAGE)
        if not page:
            break
        ids = [_decode_ids(e.body) for e in page]
        keys = [dedup_key(e.source_id, i.messageId) for e, i in zip(page, ids, strict=True)]
        if isinstance(dst, JetStreamLog):
            dst.copy_events(page, keys)
        else:
            rows = [
                (e.seq, e.source_id, e.type, _epoch_ms(i.receivedAt), e.body)
                for e, i in zip(page, ids, strict=True)
            ]
            dst.copy_events(rows, keys)
        report.events += len(page)
        after = page[-1].seq
        progress("events", after, head)


def _same_event(src: SQLiteStore, dst: PGLog | JetStreamLog, seq: int) -> bool:
    """Whether both logs hold the same event at ``seq`` (the target's head, before resuming)."""
    mine, theirs = src.read_events(after=seq - 1, limit=1), dst.read_events(after=seq - 1, limit=1)
    return bool(mine and theirs) and mine[0] == theirs[0]


def _profiles(snapshot: dict[str, list[object]], dst: PGProfiles, progress: ProgressCallback) -> bool:
    """Copy the profiles unless the target has the same already; whether they were copied."""
    if dst.snapshot() == snapshot:
        progress("profiles", 1, 1)
        return False
    dst.load_snapshot(snapshot)
    progress("profiles", 1, 1)
    return True

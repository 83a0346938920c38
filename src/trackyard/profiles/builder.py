"""The identity graph and trait rules: apply a batch of log events to the profiles.

Everything here is deterministic in log order, so replaying the log from the start gives
the same profiles, whatever the batch sizes were (the property test checks this):

- Each event's ids are taken most decisive first (``priority``). The first id that has a
  profile decides which profile the event is about; ids nobody holds yet join it.
- Two profiles an event links are merged unless they hold different values of a unique
  id type (``unique_id_types``); the older profile (the lower id) survives.
- A unique id that would give a profile a second value of its type is not linked.
- A soft id claimed by two profiles with different unique ids moves to the newer one
  (``soft_id_owner = newer``, Bloomreach) or to the latest claimant (``latest``);
  events already attributed stay where they are.
- Traits: per trait, last write wins by event time (Bloomreach ``update_timestamp``), ties
  by log seq; every write is kept in the trait's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from trackyard.consumers.batches import no_cyclic_gc
from trackyard.profiles.facts import ACCOUNT, PERSON, SEP, FactReader, Facts, decode_event, make_key
from trackyard.profiles.recent import DEFAULT_LIMIT, RecentProfiles
from trackyard.profiles.settings import ProfileSettings
from trackyard.profiles.storage import (
    Changes,
    Identity,
    MergeRecord,
    ProfileState,
    ProfileWriter,
    Progress,
    TraitWrite,
)
from trackyard.storage.base import StoredEvent

_encode = msgspec.json.Encoder().encode


class ProfileBuilder:
    """Applies log events to a :class:`ProfileWriter`, one transaction per batch."""

    def __init__(self, writer: ProfileWriter, settings: ProfileSettings, recent: int = DEFAULT_LIMIT) -> None:
        """``recent``: how many profiles to keep across batches (0: none, each batch loads all)."""
        self.writer = writer
        self.settings = settings
        self.reader = FactReader(settings)
        self.recent = RecentProfiles(recent)

    def apply(self, events: Sequence[StoredEvent]) -> Progress:
        """Apply ``events`` (in log order) after the committed cursor; return the new progress.

        Events at or before the cursor are skipped, so applying a batch twice is harmless.
        """
        progress = self.writer.begin()
        self.recent.begin(progress)
        with no_cyclic_gc():
            # A call of its own, so that the batch is freed before collections resume:
            # otherwise the first collection would examine all of it, for nothing.
            return self._apply(events, progress)

    def _apply(self, events: Sequence[StoredEvent], progress: Progress) -> Progress:
        try:
            fresh = [stored for stored in events if stored.seq > progress.cursor]
            if not fresh:
                self.writer.rollback()
                return progress
            batch = _Batch(self, progress)
            for stored in fresh:
                batch.apply(stored)
            changes = batch.changes()
            self.writer.commit(changes)
        except BaseException:
            # The batch may have changed kept profiles in place before it failed.
            self.recent.clear()
            self.writer.rollback()
            raise
        batch.remember(changes.progress)
        return changes.progress


class _Batch:
    """The working set of one transaction: the profiles and ids its events touch."""

    #: Whether events that only name a person take :meth:`_plain` (checked against
    #: :meth:`_event` by a differential property test, ``tests/profiles/test_replay.py``).
    short_paths: ClassVar[bool] = True

    def __init__(self, builder: ProfileBuilder, progress: Progress) -> None:
        self.writer = builder.writer
        self.recent = builder.recent
        self.reader = builder.reader
        self.settings = builder.settings
        self.unique_types = frozenset(builder.settings.unique_id_types)
        self.cursor = progress.cursor
        self.processed = progress.processed
        self.next_id = progress.next_id
        self.owners: dict[str, int] = {}
        self.profiles: dict[int, ProfileState] = {}
        self.dirty: set[int] = set()
        self.identities: dict[str, Identity] = {}
        self.events: list[tuple[int, int]] = []
        self.history: list[TraitWrite] = []
        self.merges: list[MergeRecord] = []
        self.joined: set[tuple[int, int]] = set()
        self.pending: list[Facts] = []
        #: Whether a profile was merged into another (ids recorded before must be settled).
        self.merged = False
        #: The profiles loaded from the store (not kept from an earlier batch).
        self.loaded: dict[int, ProfileState] = {}

    # -- loading ---------------------------------------------------------------------

    def apply(self, stored: StoredEvent) -> None:
        self.cursor = stored.seq
        self.processed += 1
        event = decode_event(stored.body)
        if event is not None:
            self.pending.append(self.reader.read(stored.seq, event))

    def _drain(self) -> None:
        """Load every id and profile the batch's events name (one query each), then apply them."""
        pending, self.pending = self.pending, []
        keys: set[str] = set()
        for facts in pending:
            if facts.subject or facts.refs or facts.unlink or facts.previous is not None:
                keys |= facts.keys()
            else:  # a plain event names only its person: no set to build
                keys.update(facts.person)
        found, missing = self.recent.owners(keys)
        if missing:
            found.update(self.writer.owners(missing))
        self.owners = found
        ids = set(found.values())
        kept = self.recent.profiles(ids)
        self.profiles.update(kept)
        if len(kept) < len(ids):
            self.loaded = self.writer.load(ids - kept.keys())
            self.profiles.update(self.loaded)
        short = self.short_paths
        for facts in pending:
            if not short or (
                facts.subject or facts.refs or facts.unlink or facts.previous is not None or facts.traits
            ):
                self._event(facts)
            else:
                self._plain(facts)

    def changes(self) -> Changes:
        self._drain()
        progress = Progress(cursor=self.cursor, processed=self.processed, next_id=self.next_id)
        profiles = [self.profiles[pid] for pid in sorted(self.dirty)]
        if self.short_paths and not self.merged:
            # Every profile id the batch recorded is a current profile's: nothing to settle.
            # (An event is recorded once per profile, so its links need no set either.)
            identities = list(self.identities.values())
            return Changes(progress, identities, profiles, sorted(self.events), self.history, self.merges)
        return Changes(
            progress=progress,
            identities=[
                i if (pid := self._find(i.profile_id)) == i.profile_id else i._replace(profile_id=pid)
                for i in self.identities.values()
            ],
            profiles=[self._settled(state) for state in profiles],
            events=sorted({(self._find(pid), seq) for pid, seq in self.events}),
            history=[
                w if (pid := self._find(w.profile_id)) == w.profile_id else w._replace(profile_id=pid)
                for w in self.history
            ],
            merges=self.merges,
        )

    def remember(self, progress: Progress) -> None:
        """Once committed: keep the profiles the batch loaded, with their ids, for the next
        batches (those it kept are kept already: it changed them in place).

        A profile the batch created is not kept: most visitors are seen once, and keeping
        each of them cost more than it saved. Their next batch loads them.
        """
        owners = self.owners
        owners.update({key: identity.profile_id for key, identity in self.identities.items()})
        loaded, dropped = self.loaded, []
        if self.merges:  # ids may name merged profiles: settle them, and drop the merged
            owners = {key: self._find(pid) for key, pid in owners.items()}
            dropped = [pid for pid, state in self.profiles.items() if state.merged_into is not None]
            loaded = {pid: state for pid, state in loaded.items() if state.merged_into is None}
        self.recent.remember(owners, loaded, dropped, progress)

    def _settled(self, state: ProfileState) -> ProfileState:
        if state.merged_into is not None:
            state.merged_into = self._find(state.merged_into)
        return state

    # -- one event -------------------------------------------------------------------

    def _event(self, facts: Facts) -> None:
        person_keys = facts.person
        if facts.previous is not None:
            person_keys = self.reader.sort_keys({*person_keys, self._previous_key(facts.previous)})
        person = self._resolve(PERSON, person_keys, facts)
        subject = self._resolve(ACCOUNT, facts.subject, facts) if facts.subject else None
        refs = [pid for keys in facts.refs if (pid := self._resolve(ACCOUNT, keys, facts)) is not None]
        # Resolving the accounts may have merged the person's profile into another: settle it.
        person = None if person is None else self._find(person)
        if person is not None and facts.traits:
            self._traits(person, facts.traits, facts.trait_ts, facts.seq)
        if subject is not None and facts.subject_traits:
            self._traits(subject, facts.subject_traits, facts.ts, facts.seq)
        if facts.join:
            if subject is not None:
                if person is not None:
                    self._join(person, subject, facts)
                for ref in refs:
                    self._join(subject, ref, facts)
            elif person is not None:
                for ref in refs:
                    self._join(person, ref, facts)
        if person is not None:
            for key in facts.unlink:
                account = self._owner(key)
                if account is not None and self.writer.leave(person, account):
                    self.joined.discard((person, account))
        if subject is None and not refs:
            if person is not None:
                self._seen(person, facts)
            return
        for pid in {p for p in (person, subject, *refs) if p is not None}:
            self._seen(self._find(pid), facts)

    def _plain(self, facts: Facts) -> None:
        """:meth:`_event` for an event that names only its person (no accounts, traits,
        alias or unlink): most of the log. A person named by one id, the commonest case,
        takes :meth:`_one`."""
        keys = facts.person
        if len(keys) == 1:
            self._seen(self._one(keys[0], facts), facts)
        elif (person := self._resolve(PERSON, keys, facts)) is not None:
            self._seen(person, facts)

    def _one(self, key: str, facts: Facts) -> int:
        """:meth:`_resolve` for a person named by one id: its owner, or a new profile holding it."""
        if (owner := self._owner(key)) is not None:
            return owner
        target = self._create(PERSON, facts)
        _, id_type, value = key.split(SEP, 2)
        if id_type in self.unique_types:
            self.profiles[target].unique[id_type] = value
        # Nobody holds it, so it is not among the batch's identities yet: first seen now.
        self.identities[key] = Identity(key, target, facts.ts, facts.seq)
        return target

    def _previous_key(self, previous: str) -> str:
        user = make_key(PERSON, "user_id", previous)
        return user if self._owner(user) is not None else make_key(PERSON, "anonymous_id", previous)

    def _seen(self, pid: int, facts: Facts) -> None:
        state = self.profiles[pid]
        state.first_seen = facts.ts if state.first_seen is None else min(state.first_seen, facts.ts)
        state.last_seen = facts.ts if state.last_seen is None else max(state.last_seen, facts.ts)
        state.event_count += 1
        self.dirty.add(pid)
        self.events.append((pid, facts.seq))

    def _join(self, member: int, account: int, facts: Facts) -> None:
        if (member, account) not in self.joined:
            self.joined.add((member, account))
            self.writer.join(member, account, facts.ts, facts.seq)

    # -- the identity graph ----------------------------------------------------------

    def _find(self, pid: int) -> int:
        state = self.profiles[pid]
        while state.merged_into is not None:
            state = self.profiles[state.merged_into]
        return state.id

    def _owner(self, key: str) -> int | None:
        if (identity := self.identities.get(key)) is not None:
            return self._find(identity.profile_id)
        pid = self.owners.get(key)
        return None if pid is None else self._find(pid)

    def _resolve(self, kind: str, keys: Sequence[str], facts: Facts) -> int | None:
        """The profile ``keys`` (most decisive first) belong to, after merges and moves."""
        target: int | None = None
        claimed: dict[str, str] = {}  # unique values this event gives the target
        new_keys: list[str] = []
        contested: list[tuple[str, int]] = []
        for key in keys:
            _, id_type, value = key.split(SEP, 2)  # split_key, without the call
            unique = id_type in self.unique_types
            owner = self._owner(key)
            if owner is not None and owner == target:
                continue
            if owner is None:
                if not unique or self._fits(target, claimed, {id_type: value}):
                    new_keys.append(key)
                    if unique:
                        claimed[id_type] = value
                continue
            if self._fits(target, claimed, self.profiles[owner].unique):
                target = owner if target is None else self._merge(target, owner, key, facts)
            elif not unique:
                contested.append((key, owner))
            # A unique id held by a profile with other unique ids is never linked.
        if target is None:
            if not new_keys and not contested:
                return None
            target = self._create(kind, facts)
        state = self.profiles[target]
        state.unique.update(claimed)
        self.dirty.add(target)
        for key in new_keys:
            self._assign(key, target, facts)
        for key, owner in contested:
            owner = self._find(owner)
            if owner != target and (self.settings.soft_id_owner == "latest" or target > owner):
                self._assign(key, target, facts)
                self._record("move", target, owner, key, facts)
        return target

    def _assign(self, key: str, target: int, facts: Facts) -> None:
        """Give ``key`` to ``target``; an id keeps the time and seq it was first seen at."""
        known = self.identities.get(key)
        first_seen, seq = (facts.ts, facts.seq) if known is None else (known.first_seen, known.seq)
        self.identities[key] = Identity(key, target, first_seen, seq)

    def _fits(self, target: int | None, claimed: dict[str, str], unique: dict[str, str]) -> bool:
        """Whether ``unique`` can join ``target`` plus ``claimed`` without a second value of a type."""
        if target is None and not claimed:
            return True
        held = claimed if target is None else {**self.profiles[target].unique, **claimed}
        return all(held.get(id_type, value) == value for id_type, value in unique.items())

    def _create(self, kind: str, facts: Facts) -> int:
        pid = self.next_id
        self.next_id += 1
        self.profiles[pid] = ProfileState(id=pid, kind=kind, created_seq=facts.seq)
        self.dirty.add(pid)
        return pid

    def _merge(self, a: int, b: int, via: str, facts: Facts) -> int:
        survivor, loser = min(a, b), max(a, b)
        keep, gone = self.profiles[survivor], self.profiles[loser]
        gone.merged_into = survivor
        self.merged = True
        keep.unique.update(gone.unique)
        for name, (value, ts, seq) in gone.traits.items():
            current = keep.traits.get(name)
            if current is None or (ts, seq) > (current[1], current[2]):
                keep.traits[name] = [value, ts, seq]
        if gone.first_seen is not None:
            keep.first_seen = (
                gone.first_seen if keep.first_seen is None else min(keep.first_seen, gone.first_seen)
            )
        if gone.last_seen is not None:
            keep.last_seen = gone.last_seen if keep.last_seen is None else max(keep.last_seen, gone.last_seen)
        keep.event_count += gone.event_count
        self.dirty |= {survivor, loser}
        self.writer.repoint(loser, survivor)
        self.joined = {(self._find(m), self._find(a)) for m, a in self.joined}
        self._record("merge", survivor, loser, via, facts)
        return survivor

    def _record(self, action: str, into: int, source: int, via: str, facts: Facts) -> None:
        self.merges.append(MergeRecord(facts.seq, facts.ts, action, into, source, via, facts.type))

    # -- traits ----------------------------------------------------------------------

    def _traits(self, pid: int, traits: dict[str, Any], ts: int, seq: int) -> None:
        state = self.profiles[pid]
        for name, value in traits.items():
            current = state.traits.get(name)
            applied = current is None or (ts, seq) > (current[1], current[2])
            if applied:
                state.traits[name] = [value, ts, seq]
            self.history.append(TraitWrite(pid, name, ts, seq, _encode(value), applied))
        self.dirty.add(pid)

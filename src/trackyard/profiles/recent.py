"""The profiles and ids of recent batches, kept by the builder for the next ones.

The consumer is the profile store's only writer while it holds the lease, so what its last
commit wrote is what the store holds: a person whose profile a recent batch loaded costs
the next batches no lookup of their ids and no load of their profile. Profiles a batch
creates are not kept (most visitors are seen once; keeping them all cost the consumer about
2 µs an event, docs/performance.md): their second batch loads them. What is kept is only
used while it is sure to be what the store holds:

- Everything is forgotten when a batch fails (the batch changed the kept states in place)
  and when a batch begins from another progress than the last commit left: a reset or a
  rebuild, the sink's skip past an event, another writer.
- A profile merged into another is dropped, and an id is used only while the profile it
  names is kept, so the ids a merge moved in the store are looked up again.
- At most ``limit`` profiles and twice as many ids, the least recently added dropped first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from itertools import islice
from typing import TypeVar

from trackyard.profiles.storage import ProfileState, Progress

#: Profiles kept across batches. The consumer's memory grew by about 10 MB more with
#: them for profiles holding a user id, 17 MB for profiles with five traits besides
#: (docs/performance.md); many or long traits cost more.
DEFAULT_LIMIT = 10_000
_K = TypeVar("_K")
_V = TypeVar("_V")


class RecentProfiles:
    """What the last batches committed: id key -> profile, and the profiles' states."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._owners: dict[str, int] = {}
        self._profiles: dict[int, ProfileState] = {}
        #: The progress the last remembered commit left; ``None`` when nothing is kept.
        self._progress: Progress | None = None

    def __len__(self) -> int:
        return len(self._profiles)

    def begin(self, progress: Progress) -> None:
        """A batch begins from ``progress``: forget everything unless it is what we committed."""
        if progress != self._progress:
            self.clear()

    def clear(self) -> None:
        self._owners.clear()
        self._profiles.clear()
        self._progress = None

    def owners(self, keys: set[str]) -> tuple[dict[str, int], set[str]]:
        """The kept owners of ``keys``, and the keys to look up in the store."""
        owners, profiles = self._owners, self._profiles
        found = {key: pid for key in keys & owners.keys() if (pid := owners[key]) in profiles}
        return found, keys - found.keys() if found else keys

    def profiles(self, ids: Collection[int]) -> dict[int, ProfileState]:
        """The kept states among ``ids``."""
        profiles = self._profiles
        return {pid: state for pid in ids if (state := profiles.get(pid)) is not None}

    def remember(
        self,
        owners: Mapping[str, int],
        loaded: Mapping[int, ProfileState],
        dropped: Iterable[int],
        progress: Progress,
    ) -> None:
        """After a commit, what the store holds at ``progress``: keep ``loaded`` (profiles read
        from the store, ``stored`` as committed), forget ``dropped`` (profiles merged into
        others), and keep each of ``owners`` (a key's current profile) whose profile is kept."""
        if self.limit <= 0:
            return
        # Updated in place, so the least recently *added* go first: a profile still in use
        # that is dropped is loaded again by the next batch that names it.
        profiles = self._profiles
        profiles.update(loaded)
        for pid in dropped:
            profiles.pop(pid, None)
        self._owners.update({key: pid for key, pid in owners.items() if pid in profiles})
        _trim(profiles, self.limit)
        _trim(self._owners, 2 * self.limit)
        self._progress = progress


def _trim(items: dict[_K, _V], limit: int) -> None:
    excess = len(items) - limit
    if excess > 0:
        for key in list(islice(items, excess)):
            del items[key]

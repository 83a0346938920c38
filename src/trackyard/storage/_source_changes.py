"""The source registry's changes, the same SQL in every backend that keeps sources in tables.

Written with ``?`` placeholders; each backend's ``_change_sources`` runs the statements in
one write transaction, maps a unique violation to ``SourceExists`` and moves
``sources_version``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from trackyard.storage.base import NoSuchSource, Source
from trackyard.storage.secrets import hash_secret
from trackyard.storage.source_names import check_source_name, generate_write_key

#: A new source's id: never one a removed source had, so stored events keep theirs.
NEXT_SOURCE_ID = (
    "(SELECT coalesce(max(id), 0) + 1"
    " FROM (SELECT id FROM sources UNION ALL SELECT id FROM removed_sources) AS known)"
)
SOURCE_COLUMNS = "id, name, write_key, enabled, rate_limit, created_at, secret_hash"

Statement = tuple[str, tuple[object, ...]]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SourceChanges:
    """Mixed into a source registry: every change of :class:`~trackyard.storage.base.SourceRegistry`."""

    def source_by_name(self, name: str) -> Source | None:
        raise NotImplementedError

    def _change_sources(
        self, sql: str, params: tuple[object, ...], *more: Statement, conflict: str = ""
    ) -> None:
        raise NotImplementedError

    def add_source(
        self,
        name: str,
        write_key: str | None = None,
        rate_limit: float | None = None,
        secret: str | None = None,
    ) -> Source:
        check_source_name(name)
        key = write_key or generate_write_key()
        self._change_sources(
            f"INSERT INTO sources (id, name, write_key, rate_limit, created_at, secret_hash)"
            f" VALUES ({NEXT_SOURCE_ID}, ?, ?, ?, ?, ?)",
            (name, key, rate_limit, now_text(), None if secret is None else hash_secret(secret)),
            conflict=f"A source named {name!r}, or one with that write key, exists already.",
        )
        return self._existing(name)

    def rotate_source(self, name: str, write_key: str | None = None) -> Source:
        self._change_sources(
            "UPDATE sources SET write_key = ? WHERE name = ?",
            (write_key or generate_write_key(), name),
            conflict="Another source has that write key.",
        )
        return self._existing(name)

    def set_source_enabled(self, name: str, enabled: bool) -> Source:
        self._change_sources("UPDATE sources SET enabled = ? WHERE name = ?", (enabled, name))
        return self._existing(name)

    def set_source_secret(self, name: str, secret: str) -> Source:
        self._change_sources("UPDATE sources SET secret_hash = ? WHERE name = ?", (hash_secret(secret), name))
        return self._existing(name)

    def set_source_rate_limit(self, name: str, rate_limit: float | None) -> Source:
        self._change_sources("UPDATE sources SET rate_limit = ? WHERE name = ?", (rate_limit, name))
        return self._existing(name)

    def remove_source(self, name: str) -> Source:
        source = self._existing(name)
        self._change_sources(
            "INSERT INTO removed_sources (id, name, removed_at) SELECT id, name, ? FROM sources WHERE id = ?",
            (now_text(), source.id),
            ("DELETE FROM sources WHERE id = ?", (source.id,)),
        )
        return source

    def _existing(self, name: str) -> Source:
        source = self.source_by_name(name)
        if source is None:
            raise NoSuchSource(name)
        return source

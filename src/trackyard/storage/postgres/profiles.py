"""The profile store in PostgreSQL: the same tables as ``profiles.db``, in the state database.

The consumer's cursor (``profile_meta``) is committed in the same transaction as the
profiles it produced, so a batch is never applied twice. Each builder transaction also
takes a transaction-scoped advisory lock: should two builders ever overlap (a lease lost
to a network cut), their batches are serialised and the second sees the first's cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import psycopg

from trackyard.profiles.storage import (
    Changes,
    Identity,
    Membership,
    MergeRecord,
    ProfileState,
    Progress,
    TraitWrite,
)
from trackyard.storage.postgres._db import connect

#: The tables a rebuild empties, in the order a snapshot lists them.
TABLES = ("profiles", "identities", "profile_events", "trait_history", "memberships", "merges")
_BUILDER_LOCK = 0x7472_6B79_0003
_PROFILE_COLUMNS = "id, kind, merged_into, created_seq, first_seen, last_seen, event_count, uniq, traits"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _state(row: tuple[Any, ...]) -> ProfileState:
    return ProfileState(
        id=row[0],
        kind=row[1],
        merged_into=row[2],
        created_seq=row[3],
        first_seen=row[4],
        last_seen=row[5],
        event_count=row[6],
        unique=_decode(row[7]),
        traits=_decode(row[8]),
    )


class PGProfiles:
    """Both protocols over one connection: the writer's transactions and the readers' queries."""

    def __init__(self, url: str) -> None:
        self._conn: psycopg.Connection[Any] = connect(url)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- ProfileWriter ---------------------------------------------------------------

    def begin(self) -> Progress:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            return self._progress()
        except BaseException:
            self._abort()
            self._lock.release()
            raise

    def _abort(self) -> None:
        if not self._conn.closed and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")

    def _progress(self) -> Progress:
        meta = dict(self._conn.execute("SELECT key, value FROM profile_meta").fetchall())
        return Progress(
            cursor=meta.get("cursor", 0), processed=meta.get("processed", 0), next_id=meta.get("next_id", 1)
        )

    def owners(self, keys: Collection[str]) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT key, profile_id FROM identities WHERE key = ANY(%s)", (list(keys),)
        ).fetchall()
        return {key: int(profile_id) for key, profile_id in rows}

    def load(self, ids: Collection[int]) -> dict[int, ProfileState]:
        rows = self._conn.execute(
            f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE id = ANY(%s)", (list(ids),)
        ).fetchall()
        return {row[0]: _state(row) for row in rows}

    def repoint(self, loser: int, survivor: int) -> None:
        pair = (survivor, loser)
        execute = self._conn.execute
        execute("UPDATE identities SET profile_id = %s WHERE profile_id = %s", pair)
        execute("UPDATE profile_events SET profile_id = %s WHERE profile_id = %s", pair)
        execute("UPDATE trait_history SET profile_id = %s WHERE profile_id = %s", pair)
        execute("UPDATE profiles SET merged_into = %s WHERE merged_into = %s", pair)
        for column, other in (("member_id", "account_id"), ("account_id", "member_id")):
            # A membership both held keeps the survivor's (older) row.
            execute(
                f"UPDATE memberships m SET {column} = %(survivor)s WHERE {column} = %(loser)s AND NOT EXISTS"
                f" (SELECT 1 FROM memberships o WHERE o.{column} = %(survivor)s AND o.{other} = m.{other})",
                {"survivor": survivor, "loser": loser},
            )
            execute(f"DELETE FROM memberships WHERE {column} = %s", (loser,))

    def join(self, member: int, account: int, since: int, seq: int) -> None:
        self._conn.execute(
            "INSERT INTO memberships (member_id, account_id, since, seq) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (member, account, since, seq),
        )

    def leave(self, member: int, account: int) -> bool:
        cursor = self._conn.execute(
            "DELETE FROM memberships WHERE member_id = %s AND account_id = %s", (member, account)
        )
        return cursor.rowcount > 0

    def commit(self, changes: Changes) -> None:
        with self._conn.cursor() as cur:
            many = cur.executemany
            many(
                "INSERT INTO identities (key, profile_id, first_seen, seq) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET profile_id = excluded.profile_id",
                changes.identities,
            )
            many(
                f"INSERT INTO profiles ({_PROFILE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, merged_into = excluded.merged_into,"
                " created_seq = excluded.created_seq, first_seen = excluded.first_seen,"
                " last_seen = excluded.last_seen, event_count = excluded.event_count,"
                " uniq = excluded.uniq, traits = excluded.traits",
                [
                    (
                        p.id,
                        p.kind,
                        p.merged_into,
                        p.created_seq,
                        p.first_seen,
                        p.last_seen,
                        p.event_count,
                        _encode(p.unique) if p.unique else b"{}",
                        _encode(p.traits) if p.traits else b"{}",
                    )
                    for p in changes.profiles
                ],
            )
            many(
                "INSERT INTO profile_events (profile_id, seq) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                changes.events,
            )
            many(
                "INSERT INTO trait_history (profile_id, name, ts, seq, value, applied)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                changes.history,
            )
            many(
                "INSERT INTO merges (seq, at, action, into_id, from_id, via, event_type)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                changes.merges,
            )
            progress = changes.progress
            many(
                "INSERT INTO profile_meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [
                    ("cursor", progress.cursor),
                    ("processed", progress.processed),
                    ("next_id", progress.next_id),
                ],
            )
        self._conn.execute("COMMIT")  # when it fails, the builder rolls back (and releases the lock)
        self._lock.release()

    def rollback(self) -> None:
        try:
            self._abort()
        finally:
            self._lock.release()

    def reset(self) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            for table in (*TABLES, "profile_meta"):
                self._conn.execute(f"DELETE FROM {table}".encode())

    # -- ProfileReader ---------------------------------------------------------------

    def progress(self) -> Progress:
        with self._lock:
            return self._progress()

    def counts(self) -> dict[str, int]:
        (people, accounts, merged) = self._all(
            "SELECT count(*) FILTER (WHERE kind = 'p' AND merged_into IS NULL),"
            " count(*) FILTER (WHERE kind = 'a' AND merged_into IS NULL),"
            " count(*) FILTER (WHERE merged_into IS NOT NULL) FROM profiles"
        )[0]
        (merges,) = self._all("SELECT count(*) FROM merges WHERE action = 'merge'")[0]
        return {"people": people, "accounts": accounts, "merged": merged, "merges": merges}

    def resolve_key(self, key: str) -> int | None:
        rows = self._all("SELECT profile_id FROM identities WHERE key = %s", (key,))
        return int(rows[0][0]) if rows else None

    def survivor(self, profile_id: int) -> int | None:
        rows = self._all("SELECT id, merged_into FROM profiles WHERE id = %s", (profile_id,))
        if not rows:
            return None
        return int(rows[0][1] if rows[0][1] is not None else rows[0][0])

    def profile(self, profile_id: int) -> ProfileState | None:
        return self.profiles([profile_id]).get(profile_id)

    def profiles(self, ids: Sequence[int]) -> dict[int, ProfileState]:
        with self._lock:
            return self.load(ids)

    def identities(self, profile_id: int) -> list[Identity]:
        rows = self._all(
            "SELECT key, profile_id, first_seen, seq FROM identities WHERE profile_id = %s ORDER BY seq, key",
            (profile_id,),
        )
        return [Identity(*row) for row in rows]

    def trait_history(self, profile_id: int, name: str | None = None) -> list[TraitWrite]:
        sql = "SELECT profile_id, name, ts, seq, value, applied FROM trait_history WHERE profile_id = %s"
        params: list[Any] = [profile_id]
        if name is not None:
            sql += " AND name = %s"
            params.append(name)
        rows = self._all(sql + " ORDER BY name, ts, seq", params)
        return [TraitWrite(r[0], r[1], r[2], r[3], bytes(r[4]), bool(r[5])) for r in rows]

    def event_seqs(self, profile_id: int, before: int | None, limit: int) -> list[int]:
        rows = self._all(
            "SELECT seq FROM profile_events WHERE profile_id = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
            (profile_id, before if before is not None else 2**63 - 1, limit),
        )
        return [row[0] for row in rows]

    def memberships(self, member_id: int) -> list[Membership]:
        return self._memberships("member_id", member_id)

    def members(self, account_id: int) -> list[Membership]:
        return self._memberships("account_id", account_id)

    def _memberships(self, column: str, profile_id: int) -> list[Membership]:
        rows = self._all(
            f"SELECT member_id, account_id, since, seq FROM memberships WHERE {column} = %s ORDER BY seq",
            (profile_id,),
        )
        return [Membership(*row) for row in rows]

    def merges(self, profile_id: int) -> list[MergeRecord]:
        rows = self._all(
            "SELECT seq, at, action, into_id, from_id, via, event_type FROM merges WHERE into_id IN"
            " (SELECT %(p)s UNION SELECT id FROM profiles WHERE merged_into = %(p)s) OR from_id IN"
            " (SELECT %(p)s UNION SELECT id FROM profiles WHERE merged_into = %(p)s) ORDER BY seq",
            {"p": profile_id},
        )
        return [MergeRecord(*row) for row in rows]

    def request_rebuild(self) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO profile_meta (key, value) VALUES ('rebuild', 1) ON CONFLICT (key) DO NOTHING"
            )

    def rebuild_requested(self) -> bool:
        return bool(self._all("SELECT 1 FROM profile_meta WHERE key = 'rebuild'"))

    def load_snapshot(self, tables: dict[str, list[Any]]) -> None:
        """Replace every profile with ``tables`` (another store's :meth:`snapshot`), in one transaction.

        For ``trackyard migrate``: the column order of each table is the same in every backend.
        """
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BUILDER_LOCK,))
            for table in (*TABLES, "profile_meta"):
                self._conn.execute(f"DELETE FROM {table}".encode())
            for table, rows in tables.items():
                name = "profile_meta" if table == "meta" else table
                if name not in (*TABLES, "profile_meta"):
                    raise ValueError(f"no profile table {table!r}")
                with self._conn.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN".encode()) as copy:
                    for row in rows:
                        copy.write_row(row)

    def snapshot(self) -> dict[str, list[Any]]:
        """Every row of every table, sorted: two builds are equal when their snapshots are."""
        with self._lock:
            tables = {t: sorted(self._conn.execute(f"SELECT * FROM {t}".encode()).fetchall()) for t in TABLES}
            tables["meta"] = sorted(
                self._conn.execute("SELECT * FROM profile_meta WHERE key != 'rebuild'").fetchall()
            )
            return tables

"""The fault suite: what trackyard promises, checked against real server processes.

Runs, in order:

* **crash loop**: a mixed load (Segment single calls and batches, Koala, Bloomreach and
  Vitally batches, some deliberately invalid items) over real HTTP while the server is
  killed with SIGKILL at random moments and restarted on the same data dir. Clients retry
  whatever was not answered ``200``. After every kill: each acknowledged event is stored
  exactly once, no rejected event is stored, ``PRAGMA integrity_check`` is ``ok``.
* **disk full**: the data dir on a 32 MB tmpfs that a filler file fills up under load: ``503`` with
  ``Retry-After`` and never a false ``200``; writes resume by themselves once space returns.
* **overload**: the store stalls (another connection holds SQLite's write lock) under a
  load of large batches: ``429`` with ``Retry-After``, bounded memory, recovery afterwards.
* **fuzz**: malformed bodies and headers (``tests/fuzz/cases.py``) on every route of the
  four formats: never a 5xx.

Then one summary table. ``--quick`` is the short form ``make test`` runs through
``tests/faults/test_crash_loop.py``. Exits non-zero on any loss, duplicate, wrongly stored
reject, unexpected 5xx or failed check.

    .venv/bin/python scripts/faults.py            # the full suite (make faults)
    .venv/bin/python scripts/faults.py --quick    # about half a minute
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msgspec  # noqa: E402
from tests.conftest import Server, start_server  # noqa: E402

from trackyard.storage.sqlite._log import bodies as log_bodies  # noqa: E402

#: Every event the load generator sends carries its own id here, whatever the format, so the
#: stored copies can be counted without knowing how each format derives its messageId.
MARK = "fid"


# -- the server and its store ------------------------------------------------------------------


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (``VmHWM``) in KB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def mark_of(event: dict[str, Any]) -> str | None:
    """The mark a generated call put in a canonical event (its properties or traits), if any."""
    for key in ("properties", "traits"):
        bag = event.get(key)
        if isinstance(bag, dict) and isinstance(bag.get(MARK), str):
            return str(bag[MARK])
    return None


def stored_marks(db: Path) -> Counter[str]:
    """How many times each marked event is stored (read straight from the database)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        counts: Counter[str] = Counter()
        for body in log_bodies(conn):
            if (mark := mark_of(msgspec.json.decode(body))) is not None:
                counts[mark] += 1
        return counts
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@contextlib.contextmanager
def tmpfs(size: str = "2m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (needs root), unmounted on the way out."""
    mount_point = Path(tempfile.mkdtemp(prefix="trackyard-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


# -- the load: requests whose events can be counted ----------------------------------------------


@dataclass
class Call:
    """One request, sent again identically until it gets a final answer."""

    path: str
    body: bytes
    headers: dict[str, str]
    #: Marks of the events a 200 acknowledges, and of those that must never be stored.
    valid: list[str]
    invalid: list[str]
    #: The status a final answer has (200, or 400 for a request refused as a whole).
    expect: int = 200


def _iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Load:
    """Builds a mixed stream of calls for one source, every event marked with a fresh id."""

    def __init__(self, write_key: str, rng: random.Random) -> None:
        self.key = write_key
        self.rng = rng
        self.n = 0
        basic = base64.b64encode(f"{write_key}:".encode()).decode()
        self.segment_auth = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}

    def mark(self, kind: str) -> str:
        self.n += 1
        return f"{kind}-{self.n}-{self.rng.getrandbits(32):08x}"

    def next(self) -> Call:
        builders: list[Callable[[], Call]] = [
            self.segment_single,
            self.segment_single,
            self.segment_batch,
            self.segment_batch,
            self.koala,
            self.bloomreach,
            self.vitally,
            self.segment_invalid,
        ]
        return self.rng.choice(builders)()

    def _segment_item(self, kind: str, mark: str) -> dict[str, Any]:
        item: dict[str, Any] = {"type": kind, "userId": f"u{self.rng.randrange(50)}", "messageId": mark}
        item["properties"] = {MARK: mark, "plan": self.rng.choice(["free", "pro"])}
        if kind == "track":
            item["event"] = "Order Completed"
        elif kind == "group":
            item["groupId"] = "g1"
        elif kind == "alias":
            item["previousId"] = "anon-1"
        return item

    def segment_single(self) -> Call:
        mark = self.mark("s")
        kind = self.rng.choice(["track", "identify", "page", "screen", "group"])
        body = msgspec.json.encode(self._segment_item(kind, mark))
        return Call(f"/v1/{kind}", body, self.segment_auth, [mark], [])

    def segment_invalid(self) -> Call:
        mark = self.mark("x")
        item = self._segment_item("track", mark)
        del item["event"]
        return Call("/v1/track", msgspec.json.encode(item), self.segment_auth, [], [mark], expect=400)

    def segment_batch(self) -> Call:
        kinds = ["track", "identify", "page", "screen", "group", "alias"]
        items = [
            self._segment_item(self.rng.choice(kinds), self.mark("b")) for _ in range(self.rng.randint(2, 40))
        ]
        invalid: list[str] = []
        if self.rng.random() < 0.3:
            bad = self._segment_item("track", self.mark("x"))
            del bad["event"]
            items.insert(self.rng.randrange(len(items) + 1), bad)
            invalid.append(bad["messageId"])
        valid = [i["messageId"] for i in items if i["messageId"] not in invalid]
        body = msgspec.json.encode({"batch": items, "sentAt": _iso()})
        path = self.rng.choice(["/v1/batch", "/v1/b", "/v1/import"])
        return Call(path, body, self.segment_auth, valid, invalid)

    def koala(self) -> Call:
        marks = [self.mark("k") for _ in range(self.rng.randint(1, 10))]
        events = [
            {"type": "track", "event": "Viewed Pricing", "message_id": m, "properties": {MARK: m}}
            for m in marks
        ]
        body = msgspec.json.encode({"profile_id": f"p{self.rng.randrange(50)}", "events": events})
        headers = {"Content-Type": "application/json"}
        return Call(f"/web/projects/{self.key}/batch", body, headers, marks, [])

    def bloomreach(self) -> Call:
        marks = [self.mark("r") for _ in range(self.rng.randint(1, 10))]
        commands = [
            {
                "name": "customers/events",
                "data": {
                    "customer_ids": {"registered": f"u{self.rng.randrange(50)}"},
                    "event_type": "purchase",
                    "properties": {MARK: m, "total": self.rng.randrange(1000)},
                },
            }
            for m in marks
        ]
        headers = {"Authorization": f"Token {self.key}", "Content-Type": "application/json"}
        return Call(
            f"/track/v2/projects/{self.key}/batch",
            msgspec.json.encode({"commands": commands}),
            headers,
            marks,
            [],
        )

    def vitally(self) -> Call:
        marks = [self.mark("v") for _ in range(self.rng.randint(1, 10))]
        messages: list[dict[str, Any]] = [
            {"type": "track", "userId": "u1", "event": "Opened App", "messageId": m, "properties": {MARK: m}}
            for m in marks
        ]
        headers = {"Authorization": f"Basic {self.key}", "Content-Type": "application/json"}
        if self.rng.random() < 0.15:
            # One invalid message refuses the whole Vitally batch: none of it may be stored.
            messages.append({"type": "user", "userId": "u1", "messageId": self.mark("x")})
            return Call("/analytics/v1/batch", msgspec.json.encode(messages), headers, [], marks, expect=400)
        return Call("/analytics/v1/batch", msgspec.json.encode(messages), headers, marks, [])


@dataclass
class Tally:
    acknowledged: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    requests: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: 5xx answers that no fault explains, and other answers a client should never get.
    unexpected: list[str] = field(default_factory=list)


class Clients:
    """``n`` concurrent clients sending calls to whatever URL the server has now, retrying
    every call that has no final answer yet (connection refused or reset, 429, 503)."""

    def __init__(self, load: Load, tally: Tally, n: int, *, allow_503: bool = False) -> None:
        self.load = load
        self.tally = tally
        self.n = n
        self.allow_503 = allow_503
        self.url = ""
        self.stop = asyncio.Event()
        self.up = asyncio.Event()

    async def drain(self, runner: asyncio.Task[None]) -> None:
        """Stop taking new calls; wait for each client to finish (retry to a final answer) its own."""
        self.stop.set()
        await asyncio.wait_for(runner, timeout=180)

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(20.0), limits=httpx.Limits(max_connections=self.n)
        ) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.n)))

    async def _client(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            await self.send(http, self.load.next(), deadline=time.monotonic() + 120)

    async def send(self, http: httpx.AsyncClient, call: Call, deadline: float) -> httpx.Response | None:
        """Send ``call`` until it has a final answer; ``None`` if ``deadline`` passes first."""
        tally = self.tally
        first = True
        while time.monotonic() < deadline:
            if not first:
                tally.retries += 1
            first = False
            await asyncio.wait_for(self.up.wait(), max(0.0, deadline - time.monotonic()))
            try:
                response = await http.post(self.url + call.path, content=call.body, headers=call.headers)
            except httpx.TransportError:
                await asyncio.sleep(0.02)  # the server is being killed or restarted: back off, then retry
                continue
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            if response.status_code in (429, 503):
                if response.status_code == 503 and not self.allow_503:
                    tally.unexpected.append(f"503 on {call.path}: {response.text[:200]}")
                retry_after = response.headers.get("retry-after")
                if retry_after is None:
                    tally.unexpected.append(f"{response.status_code} without Retry-After on {call.path}")
                # As SDKs do: wait what Retry-After says (capped at 2 s), with jitter so the
                # clients do not all come back at once.
                await asyncio.sleep(min(float(retry_after or 1), 2.0) * random.uniform(0.5, 1.0))
                continue
            if response.status_code != call.expect:
                tally.unexpected.append(f"{response.status_code} on {call.path}: {response.text[:300]}")
                return response
            if response.status_code == 200:
                tally.acknowledged.update(call.valid)
            tally.rejected.update(call.invalid)
            return response
        return None


# -- checks ------------------------------------------------------------------------------------


@dataclass
class Check:
    lost: set[str]
    duplicated: set[str]
    rejected_stored: set[str]
    integrity: str

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.rejected_stored) and self.integrity == "ok"


def check(db: Path, tally: Tally) -> Check:
    """The store against what the clients were told (the server must not be running)."""
    stored = stored_marks(db)
    return Check(
        lost={m for m in tally.acknowledged if stored[m] == 0},
        duplicated={m for m, n in stored.items() if n > 1},
        rejected_stored={m for m in tally.rejected if stored[m]},
        integrity=integrity(db),
    )


# -- the runs ----------------------------------------------------------------------------------


@dataclass
class Summary:
    runs: int = 0
    crashes: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    rejected_stored: int = 0
    fuzz_cases: int = 0
    fivexx: int = 0
    peak_rss_kb: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, tally: Tally) -> None:
        self.acknowledged += len(tally.acknowledged)
        self.fivexx += sum(n for status, n in tally.statuses.items() if status >= 500 and status != 503)
        self.failures += tally.unexpected[:20]

    def add_check(self, where: str, result: Check) -> None:
        self.lost = max(self.lost, len(result.lost))
        self.duplicated = max(self.duplicated, len(result.duplicated))
        self.rejected_stored = max(self.rejected_stored, len(result.rejected_stored))
        if not result.ok:
            self.failures.append(
                f"{where}: lost {sorted(result.lost)[:5]}, duplicated {sorted(result.duplicated)[:5]}, "
                f"rejected but stored {sorted(result.rejected_stored)[:5]}, integrity {result.integrity}"
            )

    def watch(self, server: Server) -> None:
        if server.process is not None:
            self.peak_rss_kb = max(self.peak_rss_kb, peak_rss_kb(server.process.pid))

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.rejected_stored or self.fivexx or self.failures)

    def table(self) -> str:
        rows = [
            ("runs (server starts)", str(self.runs)),
            ("crashes (SIGKILL)", str(self.crashes)),
            ("events acknowledged", f"{self.acknowledged:,}"),
            ("events lost", str(self.lost)),
            ("events duplicated", str(self.duplicated)),
            ("rejected events stored", str(self.rejected_stored)),
            ("fuzz cases tried", f"{self.fuzz_cases:,}"),
            ("5xx seen (other than 503 on a full disk)", str(self.fivexx)),
            ("peak memory (server RSS)", f"{self.peak_rss_kb / 1024:.0f} MB"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
        return "\n".join(lines)


async def _acknowledged_at_least(tally: Tally, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(tally.acknowledged) < count:
        if time.monotonic() > deadline:
            got = len(tally.acknowledged)
            raise TimeoutError(f"{got:,} acknowledged in {timeout:.0f} s, waiting for {count:,}")
        await asyncio.sleep(0.01)


async def crash_loop(
    workdir: Path, summary: Summary, crashes: int, clients: int, seed: int, *, log: Callable[[str], None]
) -> None:
    """Kill the server ``crashes`` times under load; check the store after every kill."""
    rng = random.Random(seed)
    server = start_server(workdir / "crash")
    summary.runs += 1
    tally = Tally()
    pool = Clients(Load(server.write_key, rng), tally, clients)
    pool.url = server.url
    pool.up.set()
    runner = asyncio.create_task(pool.run())
    db = server.data_dir / "trackyard.db"
    try:
        for crash in range(crashes):
            # Up until it has taken some load (a count of acknowledgements, not a time: a busy
            # machine is slower), then killed at a random moment.
            await _acknowledged_at_least(tally, len(tally.acknowledged) + rng.randint(150, 400))
            await asyncio.sleep(rng.uniform(0, 0.5))
            summary.watch(server)
            pool.up.clear()
            server.stop(signal.SIGKILL)
            summary.crashes += 1
            result = await asyncio.to_thread(check, db, tally)
            summary.add_check(f"after crash {crash + 1}", result)
            log(
                f"crash {crash + 1}/{crashes}: {len(tally.acknowledged):,} acknowledged, "
                f"{len(result.lost)} lost, {len(result.duplicated)} duplicated, integrity {result.integrity}"
            )
            # Half the restarts in each durability mode: both survive a process crash.
            server.extra = ("--durability", "process") if crash % 2 else ()
            await asyncio.to_thread(server.start)
            summary.runs += 1
            pool.url = server.url
            pool.up.set()
        await asyncio.sleep(0.5)
    finally:
        # Let every client finish the call it has in hand (retried until final), then stop.
        await pool.drain(runner)
        summary.watch(server)
        server.stop()
    result = await asyncio.to_thread(check, db, tally)
    summary.add_check("after the last run", result)
    stored = stored_marks(db)
    extra = {m for m in stored if m not in tally.acknowledged}
    if extra:
        summary.failures.append(f"stored but never acknowledged after all retries: {sorted(extra)[:5]}")
    summary.merge(tally)
    log(
        f"crash loop: {tally.requests:,} requests, {tally.retries:,} retries, statuses {dict(tally.statuses)}"
    )


async def more_acknowledged(tally: Tally, n: int, *, timeout: float) -> int:
    """Wait until ``n`` more events are acknowledged (or ``timeout``); how many were."""
    start = len(tally.acknowledged)
    deadline = time.monotonic() + timeout
    while len(tally.acknowledged) < start + n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return len(tally.acknowledged) - start


async def disk_full(workdir: Path, summary: Summary, *, log: Callable[[str], None]) -> None:
    """Fill the disk under load: 503 + Retry-After, no false 200, resume once space returns.

    The tmpfs leaves room for the store to grow under the load (SQLite's WAL does not shrink),
    so once the filler is removed the space is really back."""
    if os.geteuid() != 0:
        summary.failures.append("disk full: needs root to mount a tmpfs")
        return
    with tmpfs("32m") as mount:
        server = start_server(mount / "data")
        summary.runs += 1
        tally = Tally()
        pool = Clients(Load(server.write_key, random.Random(7)), tally, 4, allow_503=True)
        pool.url = server.url
        pool.up.set()
        try:
            runner = asyncio.create_task(pool.run())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(fill, mount / "filler")
            deadline = time.monotonic() + 30
            while tally.statuses[503] < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            full_503 = tally.statuses[503]
            async with httpx.AsyncClient() as http:
                alive = (await http.get(server.url + "/healthz")).status_code
            (mount / "filler").unlink()
            resumed = await more_acknowledged(tally, 200, timeout=30)
            await pool.drain(runner)
            summary.watch(server)
        finally:
            server.stop()
        result = check(server.data_dir / "trackyard.db", tally)
        summary.add_check("disk full", result)
        summary.merge(tally)
        if full_503 == 0:
            summary.failures.append("disk full: no 503 while the disk was full")
        if alive != 200:
            summary.failures.append(f"disk full: /healthz answered {alive} while the disk was full")
        if resumed < 200:
            summary.failures.append(f"disk full: only {resumed} events acknowledged after space returned")
        log(
            f"disk full: {full_503} answers 503 while full, {resumed} events acknowledged after freeing space"
        )


async def overload(workdir: Path, summary: Summary, seconds: float, *, log: Callable[[str], None]) -> None:
    """A stalled store under heavy batch load: 429 + Retry-After, bounded memory, recovery."""
    server = start_server(workdir / "overload")
    summary.runs += 1
    tally = Tally()
    rng = random.Random(11)
    load = Load(server.write_key, rng)

    def big_batch() -> Call:
        items = [load._segment_item("track", load.mark("o")) for _ in range(1500)]
        body = msgspec.json.encode({"batch": items})
        return Call("/v1/batch", body, load.segment_auth, [i["messageId"] for i in items], [])

    load.next = big_batch  # type: ignore[method-assign]
    pool = Clients(load, tally, 64)
    pool.url = server.url
    pool.up.set()
    stall = sqlite3.connect(server.data_dir / "trackyard.db", isolation_level=None, timeout=30)
    try:
        runner = asyncio.create_task(pool.run())
        await asyncio.sleep(0.5)
        stall.execute("BEGIN IMMEDIATE")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            summary.watch(server)
            await asyncio.sleep(0.1)
        stall.execute("ROLLBACK")
        shed = tally.statuses[429]
        recovered = await more_acknowledged(tally, 5000, timeout=30)
        await pool.drain(runner)
        summary.watch(server)
    finally:
        stall.close()
        server.stop()
    summary.add_check("overload", check(server.data_dir / "trackyard.db", tally))
    summary.merge(tally)
    if shed == 0:
        summary.failures.append("overload: no 429 while the store was stalled")
    if recovered < 5000:
        summary.failures.append(f"overload: only {recovered} events acknowledged after the stall")
    log(
        f"overload: {shed} answers 429 during a {seconds:g} s stall, "
        f"{recovered:,} events acknowledged after it"
    )


def fuzz(workdir: Path, summary: Summary, examples: int, *, log: Callable[[str], None]) -> None:
    """Malformed requests on every route: count the cases and every 5xx."""
    from tests.fuzz.cases import run_http_fuzz

    server = start_server(workdir / "fuzz")
    summary.runs += 1
    try:
        tried, fivexx, failures = run_http_fuzz(server.url, server.write_key, examples)
        summary.watch(server)
    finally:
        server.stop()
    summary.fuzz_cases += tried
    summary.fivexx += fivexx
    summary.failures += failures[:20]
    log(f"fuzz: {tried:,} cases, {fivexx} answers 5xx")


def run(*, quick: bool, seed: int | None = None, log: Callable[[str], None] = print) -> Summary:
    seed = random.randrange(2**32) if seed is None else seed
    log(f"seed {seed}")
    summary = Summary()
    with tempfile.TemporaryDirectory(prefix="trackyard-faults-") as tmp:
        workdir = Path(tmp)
        if quick:
            asyncio.run(crash_loop(workdir, summary, crashes=4, clients=4, seed=seed, log=log))
        else:
            asyncio.run(crash_loop(workdir, summary, crashes=40, clients=8, seed=seed, log=log))
            asyncio.run(disk_full(workdir, summary, log=log))
            asyncio.run(overload(workdir, summary, seconds=4.0, log=log))
            fuzz(workdir, summary, examples=1500, log=log)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the short form: a few crashes, nothing else")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's random choices")
    args = parser.parse_args()
    started = time.monotonic()
    summary = run(quick=args.quick, seed=args.seed, log=lambda line: print(line, flush=True))
    print()
    print(summary.table())
    print(f"\n{time.monotonic() - started:.0f} s")
    for failure in summary.failures:
        print(f"FAILED: {failure}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())

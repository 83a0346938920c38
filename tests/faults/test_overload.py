"""Far beyond capacity: 429 with Retry-After, bounded memory, recovery once the load drops."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from scripts import faults

from tests.conftest import start_server
from tests.faults._raw import closed_within, connect, head, status_of

#: The server idles at about 45 MB; a stalled store under 64 clients sending 1,500-event
#: batches must stay well under this.
MAX_RSS_KB = 400 * 1024


def test_a_stalled_store_under_heavy_load_sheds_with_429_and_recovers(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = faults.Summary()
    asyncio.run(faults.overload(tmp_path, summary, seconds=2.0, log=lines.append))
    report = "\n".join([*lines, summary.table(), *summary.failures])
    assert summary.ok, report
    assert 0 < summary.peak_rss_kb < MAX_RSS_KB, report


def test_requests_in_flight_are_bounded_before_their_bodies_are_read(tmp_path: Path) -> None:
    """Connections that each announce a 400 KB batch and send half of it: past the bound the
    server must refuse at once (429, Retry-After) instead of buffering every body."""
    # Room for 32 such bodies in flight.
    server = start_server(tmp_path / "data", env={"TRACKYARD_MAX_IN_FLIGHT_BYTES": str(32 * 400_000)})
    auth = "Authorization: Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()
    socks = []
    try:
        for _ in range(120):
            sock = connect(server.url)
            sock.sendall(head("/v1/batch", 400_000, auth) + b'{"batch": [' + b" " * 200_000)
            socks.append(sock)
        refused = 0
        for sock in socks:
            _, answer = closed_within(sock, 0.05)
            if status_of(answer) == 429 and b"retry-after" in answer.lower():
                refused += 1
        assert refused >= 120 - 32 - 8
    finally:
        for sock in socks:
            sock.close()
        server.stop()

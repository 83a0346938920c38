"""A child process for the SIGKILL test: compaction and retention in a loop until killed.

``python -m tests.retention._maintain DATA_DIR loop|once[-size] [STATE_URL]``: prints
``started`` once its connections are open (to the SQLite store, or to PostgreSQL state and
log), then compacts and prunes (30 days, or with ``-size`` a size limit of 1 byte; ignoring
consumers) over and over; ``once`` stops when there is nothing left to do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trackyard.config import Settings
from trackyard.retention.policy import Policy, run_pass
from trackyard.storage.factory import open_backends, open_maintenance


def main(data_dir: str, mode: str, state_url: str | None = None) -> int:
    settings = Settings(data_dir=Path(data_dir), durability="process", state_url=state_url)
    backends = open_backends(settings)
    maintenance = open_maintenance(settings)
    mode, _, by = mode.partition("-")
    limit = {"max_bytes": 1} if by == "size" else {"max_age_seconds": 30 * 86_400}
    policy = Policy(ignore_consumers=True, rejects_seconds=0, **limit)
    print("started", flush=True)
    while True:
        moved = 0
        while events := maintenance.compact():
            moved += events
        report = run_pass(backends, maintenance, policy)
        if mode == "once" and not moved and not report.dropped_events and not report.compacted_events:
            return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

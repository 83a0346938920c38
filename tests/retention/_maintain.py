"""A child process for the SIGKILL test: compaction and retention in a loop until killed.

``python -m tests.retention._maintain DATA_DIR loop|once``: prints ``started`` once its
connections are open, then compacts and prunes (30 days, ignoring consumers) over and over;
``once`` stops when there is nothing left to do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trackyard.config import Settings
from trackyard.retention.policy import Policy, run_pass
from trackyard.storage.factory import open_backends, open_maintenance


def main(data_dir: str, mode: str) -> int:
    settings = Settings(data_dir=Path(data_dir), durability="process")
    backends = open_backends(settings)
    maintenance = open_maintenance(settings)
    policy = Policy(max_age_seconds=30 * 86_400, ignore_consumers=True, rejects_seconds=0)
    print("started", flush=True)
    while True:
        moved = 0
        while events := maintenance.compact():
            moved += events
        report = run_pass(backends, maintenance, policy)
        if mode == "once" and not moved and not report.dropped_events and not report.compacted_events:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

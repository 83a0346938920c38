"""One consumer's process: ``python -m trackyard.consumers._child NAME PARENT_PID``.

Started by the supervisor, which holds the consumer's lease and passes its descriptor
down, so the lease stays held until both have exited. Settings arrive as ``TRACKYARD_*``
variables. SIGTERM or SIGINT (Ctrl-C reaches the whole process group) ends it after the
batch in hand is committed; so does the death of the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackyard.consumers.runner import StopFlag

_PR_SET_PDEATHSIG = 1


def _stop_with_parent(parent: int, stop: StopFlag) -> None:
    with contextlib.suppress(OSError, AttributeError):
        # Linux: the kernel sends SIGTERM when the supervisor dies, SIGKILL included.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above ran
        stop.set()

    def watch() -> None:  # the portable fallback
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    # Before the imports below (the slow part of starting): a stop asked for while they
    # run is then a clean exit too.
    from trackyard.consumers.runner import StopFlag  # small: the slow imports come later

    stop = StopFlag()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    name, parent = argv[1], int(argv[2])
    _stop_with_parent(parent, stop)
    level = os.environ.get("TRACKYARD_LOG_LEVEL", "info").upper()
    if os.environ.get("TRACKYARD_LOG_FORMAT") == "json":
        from trackyard.logs import JSONFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=f"%(levelname)s:     [{name} {os.getpid()}] %(message)s")
    from trackyard.config import Settings
    from trackyard.consumers.registry import spec_named
    from trackyard.storage.factory import open_backends

    backends = open_backends(Settings.from_env())
    try:
        # With PostgreSQL leases, this waits for an earlier instance still finishing its batch.
        with backends.leases().running(name):
            if stop.is_set():
                return 0
            runner = spec_named(name).open_runner(backends)
            stop.link(runner.stop)  # what the runner's sink may wait on (a destination's retries)
            runner.stop = stop
            try:
                runner.run()
            finally:
                runner.sink.close()
    finally:
        backends.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

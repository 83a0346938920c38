"""Leases: one holder per name, freed by release or by the holder's death (SIGKILL included),
and shared with a child process that inherited it until both are gone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from trackyard.storage.factory import Backends

_SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _wait_until_free(backends: Backends, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while backends.leases().held(name):
        assert time.monotonic() < deadline, f"lease {name} still held"
        time.sleep(0.02)


def test_one_holder_at_a_time_until_released(backends: Backends) -> None:
    leases = backends.leases()
    assert not leases.held("profiles")
    first = leases.acquire("profiles")
    assert first is not None and first.name == "profiles"
    assert leases.acquire("profiles") is None  # a second acquire fails, even in this process
    assert leases.held("profiles")
    other = leases.acquire("warehouse")  # names are independent
    assert other is not None
    first.release()
    assert not leases.held("profiles")
    again = leases.acquire("profiles")
    assert again is not None
    again.release()
    other.release()


def test_probing_does_not_take_a_free_lease(backends: Backends) -> None:
    leases = backends.leases()
    assert not leases.held("profiles")
    lease = leases.acquire("profiles")
    assert lease is not None
    lease.release()


def test_a_lease_shared_with_a_child_is_freed_when_the_killed_child_and_the_parent_are_gone(
    backends: Backends,
) -> None:
    leases = backends.leases()
    lease = leases.acquire("profiles")
    assert lease is not None
    fd = lease.fileno()
    assert fd is not None
    child = subprocess.Popen(_SLEEPER, pass_fds=(fd,))
    try:
        lease.release()  # the parent lets go: the child still holds it
        assert leases.held("profiles")
        assert leases.acquire("profiles") is None
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        _wait_until_free(backends, "profiles")
        assert (taken := leases.acquire("profiles")) is not None
        taken.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

"""Leases: one holder per name, freed by release or by the holder's death (SIGKILL included),
and shared with a child process that inherited it until both are gone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from trackyard.storage.factory import Backends

_SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _wait_until_free(backends: Backends, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while backends.leases().held(name):
        assert time.monotonic() < deadline, f"lease {name} still held"
        time.sleep(0.02)


def _kill_and_take(backends: Backends, child: subprocess.Popen[Any]) -> None:
    """SIGKILL the process holding the lease: it is freed, and can be taken."""
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    _wait_until_free(backends, "profiles")
    assert (taken := backends.leases().acquire("profiles")) is not None
    taken.release()


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
    if fd is None:
        lease.release()
        pytest.skip("this backend's leases are not inherited: the child takes its running lock instead")
    child = subprocess.Popen(_SLEEPER, pass_fds=(fd,))
    try:
        lease.release()  # the parent lets go: the child still holds it
        assert leases.held("profiles")
        assert leases.acquire("profiles") is None
        _kill_and_take(backends, child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@contextlib.contextmanager
def _holder(backends: Backends, code: str) -> Iterator[subprocess.Popen[str]]:
    """Another process on the same store running ``code`` with ``leases`` open; killed on exit."""
    script = (
        "import sys, time\n"
        "from trackyard.config import Settings\n"
        "from trackyard.storage.factory import open_leases\n"
        "leases = open_leases(Settings.from_env())\n"
        f"{code}\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, **backends.settings.to_env()}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()


def test_a_lease_held_by_a_killed_process_is_freed(backends: Backends) -> None:
    leases = backends.leases()
    with _holder(backends, "lease = leases.acquire('profiles'); assert lease is not None") as child:
        assert leases.held("profiles")
        assert leases.acquire("profiles") is None
        _kill_and_take(backends, child)


def test_running_waits_for_an_earlier_instance_to_be_gone(backends: Backends) -> None:
    """A new holder's consumer does not start while the old holder's consumer still works."""
    probe = backends.leases().acquire("profiles")
    assert probe is not None
    inherited = probe.fileno() is not None
    probe.release()
    if inherited:
        pytest.skip("this backend's children inherit the lease: running() has nothing to wait for")
    entered = threading.Event()

    def second() -> None:
        with backends.leases().running("profiles"):
            entered.set()

    waiter = threading.Thread(target=second, daemon=True)
    with _holder(backends, "entered = leases.running('profiles'); entered.__enter__()") as child:
        waiter.start()
        assert not entered.wait(1.0), "a second instance started while the first still ran"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert entered.wait(10), "the running lock was not freed by the old instance's death"
    waiter.join(timeout=10)

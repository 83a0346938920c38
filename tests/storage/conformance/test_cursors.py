"""CursorStore: each consumer's position, durable across reopening, independent per consumer."""

from __future__ import annotations

from trackyard.storage.factory import Backends, open_backends


def test_a_new_consumer_starts_at_zero_and_commits_move_it(backends: Backends) -> None:
    cursors = backends.cursors()
    assert cursors.get("profiles") == 0
    cursors.commit("profiles", 41)
    cursors.commit("profiles", 42)
    assert cursors.get("profiles") == 42
    # A reset (a rebuild) may move it back.
    cursors.commit("profiles", 0)
    assert cursors.get("profiles") == 0


def test_consumers_have_their_own_cursors(backends: Backends) -> None:
    cursors = backends.cursors()
    cursors.commit("a", 5)
    cursors.commit("b", 9)
    assert (cursors.get("a"), cursors.get("b"), cursors.get("c")) == (5, 9, 0)


def test_a_committed_cursor_survives_closing_and_reopening(backends: Backends) -> None:
    backends.cursors().commit("warehouse", 1234)
    settings = backends.settings
    backends.close()
    reopened = open_backends(settings)
    try:
        assert reopened.cursors().get("warehouse") == 1234
    finally:
        reopened.close()

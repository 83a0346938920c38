"""Help never needs anything: every command and subcommand answers --help with exit 0."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from trackyard.cli import main


def _paths(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # list_commands/get_command, not .commands: the top-level group loads its commands lazily.
    found = [path]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _paths(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", _paths(main), ids=lambda p: " ".join(p) or "trackyard")
def test_help_needs_no_option(path: tuple[str, ...]) -> None:
    # No write key, URL or data dir from the environment: help must not need them.
    env = {"TRACKYARD_WRITE_KEY": None, "TRACKYARD_URL": None, "TRACKYARD_DATA_DIR": None}
    result = CliRunner().invoke(main, [*path, "--help"], env=env, prog_name="trackyard")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: trackyard {' '.join(path)}".rstrip())


def test_send_without_a_write_key_says_how_to_get_one() -> None:
    result = CliRunner().invoke(
        main, ["send", "track", "E", "--user-id", "u"], env={"TRACKYARD_WRITE_KEY": None}
    )
    assert result.exit_code == 2
    assert "Missing option '--write-key'" in result.output
    assert "trackyard sources show NAME" in result.output

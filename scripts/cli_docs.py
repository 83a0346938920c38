"""Print docs/cli.md: every trackyard command's --help, generated so docs and CLI never drift.

Run with `make docs`; tests/test_cli.py fails when docs/cli.md is out of date.
"""

from __future__ import annotations

import click

from trackyard.cli import main


def _walk(command: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    # The command's own context_settings (e.g. -h as well as --help), as when run for real;
    # children inherit them through the parent context.
    settings = {**command.context_settings, "terminal_width": 100, "max_content_width": 100}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    out = [f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`", "", "```text", ctx.get_help(), "```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _walk(sub, [*path, name], ctx)
    return out


def render() -> str:
    header = [
        "# Command line reference",
        "",
        "Generated from the commands' own `--help` by `make docs`; a test fails when it is stale.",
        "",
    ]
    return "\n".join(header + _walk(main, ["trackyard"], None))


if __name__ == "__main__":
    print(render(), end="")

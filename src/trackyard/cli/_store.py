"""Opening the configured store for a CLI command, with an error that says what to do."""

from __future__ import annotations

from pathlib import Path

import click

from trackyard.config import Settings
from trackyard.storage.sqlite.store import SQLiteStore


def open_store(data_dir: Path, *, create: bool = False) -> SQLiteStore:
    if not create and not (data_dir / "trackyard.db").exists():
        raise click.ClickException(
            f"No trackyard store in {data_dir}. Start the server there first (trackyard serve --data-dir "
            f"{data_dir}) or pass the right --data-dir."
        )
    return SQLiteStore(Settings(data_dir=data_dir), writer=False)

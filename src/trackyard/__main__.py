from __future__ import annotations

from trackyard.cli import main

main()

"""Profiles and accounts over HTTP (issue 4), behind the admin token; app.py already mounts them."""

from __future__ import annotations

from starlette.routing import Route

from trackyard.ingest.collector import Collector


class ProfilesAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def routes(self) -> list[Route]:
        return []

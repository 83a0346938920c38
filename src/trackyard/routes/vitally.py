"""Vitally's ingestion API (issue 3). Routes are added here; app.py already mounts them."""

from __future__ import annotations

from starlette.routing import Route

from trackyard.ingest.collector import Collector


class VitallyAPI:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def routes(self) -> list[Route]:
        return []

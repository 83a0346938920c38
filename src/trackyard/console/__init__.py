"""The web console at ``/console``: a live event debugger, sources, destinations and profiles.

Server-rendered Jinja2 templates with htmx (vendored in ``static/``, no CDN), behind a
session signed with the admin token (``trackyard serve --admin-token``). See docs/console.md.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from trackyard.console.app import Guard, console_app, templates
from trackyard.console.pages import Pages
from trackyard.ingest.collector import Collector
from trackyard.storage.factory import Backends


def console(collector: Collector, backends: Backends) -> ASGIApp:
    """The console's ASGI app, for ``Mount("/console", ...)``."""
    guard = Guard(collector.settings.admin_token, templates())
    return console_app(guard, Pages(guard, collector, backends).routes())

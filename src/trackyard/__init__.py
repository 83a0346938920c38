"""trackyard: a self-hosted customer-event collector.

It speaks Segment's HTTP Tracking API, stores every acknowledged event durably in
one canonical shape (the Segment Spec) and never loses what it acknowledged.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Storage: the durable event log, the rejects, the sources, behind one small interface."""

from __future__ import annotations

from trackyard.store.base import AppendResult, EventRecord, RejectRecord, Source, Store, StoredEvent
from trackyard.store.sqlite import SQLiteStore

__all__ = ["AppendResult", "EventRecord", "RejectRecord", "SQLiteStore", "Source", "Store", "StoredEvent"]

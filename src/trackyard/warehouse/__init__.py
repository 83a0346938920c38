"""The warehouse: Segment's tables, loaded from the log into DuckDB or PostgreSQL (docs/warehouse.md)."""

from trackyard.warehouse._backend import WarehouseBusy
from trackyard.warehouse.loader import WarehouseSink, open_backend, sync

__all__ = ["WarehouseBusy", "WarehouseSink", "open_backend", "sync"]

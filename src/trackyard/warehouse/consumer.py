"""The warehouse loader as a consumer of the log, on the consumer framework.

``trackyard serve`` runs it by default, into the embedded DuckDB file or the warehouse
``--warehouse`` / ``TRACKYARD_WAREHOUSE`` names (``off``: not at all); ``trackyard consume
warehouse`` runs it alone. Its cursor is committed in the warehouse, in the transaction of
each batch.
"""

from __future__ import annotations

from trackyard.consumers.runner import Runner, RunPolicy, StopFlag
from trackyard.storage.factory import Backends
from trackyard.warehouse.loader import DEFAULT_BATCH, WarehouseSink

NAME = "warehouse"


def open_runner(backends: Backends) -> Runner:
    """The registry's entry: the loader over the configured log and warehouse."""
    settings = backends.settings
    names = {source.id: source.name for source in backends.sources.sources()}
    stop = StopFlag()  # the runner's, which the sink checks between tables
    sink = WarehouseSink.open(settings.warehouse_url, settings.data_dir, names, stop)
    policy = RunPolicy(batch_size=DEFAULT_BATCH, poll_interval=0.5)
    return Runner(NAME, backends.log, sink, backends.cursors(), backends.dead_letters(), policy, stop)

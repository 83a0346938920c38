"""What every consumer's batch shares: a pause of the cyclic garbage collector around it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """No cyclic collections inside: a batch allocates a few objects per event (the events
    read, what is built of them), nearly all freed by reference counting when the batch is
    done, and the collections that many allocations set off meanwhile examine them all for
    nothing: about 1.5 µs per event in the profile builder, another 0.5–1 µs in reading the
    log (docs/performance.md). Collections resume afterwards; nested pauses are one pause.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()

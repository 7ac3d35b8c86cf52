"""The server process's garbage collector, set for thousands of long-lived streams.

Python's cyclic collector walks every object it tracks in a full collection, and starts one
whenever the objects promoted to its oldest generation since the last reach a quarter of those
in it. An open event stream is a few hundred objects that live for hours; each event it waits
for adds a few short-lived ones, which a young collection promotes if it runs while they are
alive. With Python's default thresholds (700, 10, 10), one process holding 10,000 streams made
a full collection every 7 to 14 s, each pausing the event loop for about 1.4 s with nothing to
collect (docs/benchmarks.md, "Event stream"). Collecting young objects 70 times less often
promotes about 70 times fewer of them, so full collections become that much rarer; what the
process loaded at startup is frozen out of every collection.
"""

from __future__ import annotations

import gc

import structlog

logger = structlog.get_logger(__name__)

# Allocations (net of deallocations) of tracked objects between two young collections; Python's
# default is 700. Cyclic garbage waits longer to be freed: at most this many objects' worth.
YOUNG_THRESHOLD = 50_000
# Python's defaults: young collections per middle one, middle ones per full-collection check.
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 10


async def tune() -> None:
    """Freeze what the process has loaded and space the young collections (ASGI lifespan
    startup: once the application is imported, before any request)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    logger.info("garbage_collector_tuned", frozen=gc.get_freeze_count(), young=YOUNG_THRESHOLD)

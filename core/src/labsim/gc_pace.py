"""How often the garbage collector runs while a simulation's events run.

A run makes container objects (events, requests, per-step lists) at a high rate, most of
them dying young. At CPython's default first threshold (700 net allocations) the young ones
still in flight are scanned and promoted again and again: 5 % of a 30,000-request vLLM run's
CPU time went to collections, 0.2 % with the threshold at :data:`EVENT_LOOP_GC_THRESHOLD`
(measured with ``gc.callbacks`` on the workload of ``benchmarks/speed_serving.py``). Nothing a
run computes depends on when garbage is collected, so outputs are the same.

>>> with young_collections_spaced():                  # doctest: +SKIP
...     run_events(env, limit)
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

#: the collector's first threshold while events run (CPython's default: 700)
EVENT_LOOP_GC_THRESHOLD = 20_000


@contextmanager
def young_collections_spaced(threshold: int = EVENT_LOOP_GC_THRESHOLD):
    """Raise the garbage collector's first threshold to *threshold* for the block, unless it
    is higher already or collection is off; the old thresholds come back after it, whatever
    happens."""
    old = gc.get_threshold()
    if 0 < old[0] < threshold:
        gc.set_threshold(threshold, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


__all__ = ["EVENT_LOOP_GC_THRESHOLD", "young_collections_spaced"]

"""How often the garbage collector runs: while the command line loads, and while a
simulation's events run.

Loading, it does not run: what the command line loads lives as long as the process, and is
frozen once loaded (:func:`start_up_frozen`). A run makes container objects (events,
requests, per-step lists) at a high rate, most of them dying young. At CPython's default first
threshold (700 net allocations) the young ones still in flight are scanned and promoted again
and again: 5 % of a 30,000-request vLLM run's CPU time went to collections, 0.2 % with the
threshold at :data:`EVENT_LOOP_GC_THRESHOLD` (measured with ``gc.callbacks`` on the workload of
``benchmarks/speed_serving.py``). Nothing a run computes depends on when garbage is collected,
so outputs are the same.

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


@contextmanager
def start_up_frozen():
    """The collector paused while the block loads what lives as long as the process (the
    command line's modules, the plugins and their registry), and everything the process holds
    at the block's end frozen: moved to the permanent generation, which collections never
    walk. This is CPython's own pattern for long-lived objects (``gc.freeze``'s documentation:
    disable early, freeze once they exist). Loading the command line otherwise runs its
    collections over an ever larger heap of objects that never die, and the run's collections
    walk them again: 5.6 % of the instructions of ``labsim run`` of 10 requests, and 14 % of
    its seconds (docs/speed.md). The little cyclic garbage loading leaves (some 2,000 objects)
    is frozen with the rest. A collector the program had turned off stays off, and nothing is
    frozen then.

    >>> with start_up_frozen():                       # doctest: +SKIP
    ...     from labsim.cli import cli
    """
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.freeze()
            gc.enable()


__all__ = ["EVENT_LOOP_GC_THRESHOLD", "start_up_frozen", "young_collections_spaced"]

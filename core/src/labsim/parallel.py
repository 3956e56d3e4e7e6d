"""Running independent pieces of work in worker processes, results in submission order.

Searches (``labsim search``, ``labsim scale --search``) run many independent simulations;
:func:`map_processes` spreads them over local processes (forked, so plugins loaded in the
parent are there) and returns the results in the order of the tasks, so the output does not
depend on which worker finished first.

>>> map_processes(abs, [-1, 2, -3], workers=1)
[1, 2, 3]
"""

from __future__ import annotations

import os


def default_workers(tasks: int) -> int:
    """One fewer than the CPUs (at least one), and no more than *tasks*."""
    return max(1, min(tasks, (os.cpu_count() or 2) - 1))


def map_processes(fn, tasks: list, workers: int = 0, progress=None) -> list:
    """``[fn(t) for t in tasks]``, in up to *workers* processes (0: :func:`default_workers`).

    *fn* must be a module-level function; *progress* is called with 1 as each task ends (in
    submission order).
    """
    workers = workers or default_workers(len(tasks))
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            out.append(fn(task))
            if progress:
                progress(1)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, task) for task in tasks]
        out = []
        for future in futures:
            out.append(future.result())
            if progress:
                progress(1)
    return out


__all__ = ["default_workers", "map_processes"]

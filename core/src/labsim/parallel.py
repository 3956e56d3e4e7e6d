"""Running independent pieces of work in worker processes, results in submission order.

Searches (``labsim search``, ``labsim scale --search``) run many independent simulations;
:func:`map_processes` spreads them over local processes — the sweeps' isolated runner, one
forked process per task, so plugins loaded in the parent are there and a crash stays in its
process — and returns the results in the order of the tasks, so the output does not depend on
which worker finished first.

>>> map_processes(abs, [-1, 2, -3], workers=1)
[1, 2, 3]
"""

from __future__ import annotations


def usable_cpus() -> int:
    """The CPUs this process may use, by joblib's count (loky's): the machine's CPUs, narrowed
    by the process's affinity mask (``taskset``, a cpuset), a container's CPU quota (cgroups:
    ``docker --cpus``, a Kubernetes CPU limit) and ``LOKY_MAX_CPU_COUNT``. A sweep in a
    2-CPU container on a 64-core host starts 2 workers, not 63. (joblib is imported here, not
    with this module: ``labsim run`` never needs it.)"""
    from joblib import cpu_count

    return max(1, cpu_count())


def default_workers(tasks: int | None = None) -> int:
    """One worker per usable CPU (:func:`usable_cpus`), and no more than *tasks* when given.

    The parent only waits: it sleeps on the workers' pipes (``multiprocessing.connection.wait``)
    and commits each result as it comes, so a worker on every CPU keeps them all busy. With one
    fewer, a 2-core machine ran a sweep on one core (``benchmarks/speed_sweep.py``)."""
    cpus = usable_cpus()
    return max(1, cpus if tasks is None else min(tasks, cpus))


def map_processes(fn, tasks: list, workers: int = 0, progress=None) -> list:
    """``[fn(t) for t in tasks]``, in up to *workers* processes (0: :func:`default_workers`).

    Each task runs in a process of its own (:func:`labsim.sweep.run_isolated`); a task that
    raises, or whose process dies, raises here with its reason. *fn* must be a module-level
    function; *progress* is called with 1 as each task ends.
    """
    workers = workers or default_workers(len(tasks))
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            out.append(fn(task))
            if progress:
                progress(1)
        return out
    from labsim.sweep import run_isolated

    queue = list(enumerate(tasks))
    out: list = [None] * len(tasks)
    failures: list[str] = []

    def take():
        if not queue:
            return None
        index, task = queue.pop(0)
        return index, None, _call, (fn, task)

    def finish(index, _point, status, error, value):
        if status == "ok":
            out[index] = value
        else:
            failures.append(error)
        if progress:
            progress(1)

    run_isolated(take, workers, finish)
    if failures:
        raise RuntimeError(failures[0])
    return out


def _call(fn, task):
    """``fn(task)`` in a worker, as ``(status, error, value)``: a raise becomes its message."""
    try:
        return "ok", None, fn(task)
    except Exception as ex:  # noqa: BLE001 - reported by the parent
        from labsim.cli import internal_error_message

        return "error", internal_error_message(ex), None


__all__ = ["default_workers", "map_processes", "usable_cpus"]

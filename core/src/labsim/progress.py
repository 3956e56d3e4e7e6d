"""Progress bars for long work (runs, calibration, sweeps), drawn only for a person watching.

A bar appears on stderr only when stdout and stderr are both terminals, ``CI`` is not set,
and the command line did not say ``--quiet`` (:func:`set_quiet`); it shows nothing at all
for work shorter than :data:`DELAY_S`. Everything else — pipes, CI logs, the Python API —
stays silent. The simulation loop pays for the bar only once every :data:`EVERY` events
(:func:`run_events`), so a run with a bar is as fast as one without.

>>> bar = sim_bar(total_s=120.0, label="quickstart")      # None when no one is watching
>>> run_events(env, limit=600.0, bar=bar)                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys

import simpy

#: Events simulated between two looks at the bar (a bar redraws at most ~10 times a second).
EVERY = 4096
#: Seconds of wall time before a bar first appears (short work prints nothing).
DELAY_S = 1.0

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn every progress bar off (``labsim --quiet``) or back on."""
    global _quiet
    _quiet = bool(quiet)


def _on_terminal() -> bool:
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def wanted() -> bool:
    """True when a person is watching: both streams are terminals, not CI, not ``--quiet``."""
    if _quiet or os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return _on_terminal()


class Bar:
    """A thin tqdm bar on stderr; ``update``/``set``/``close`` as tqdm's."""

    def __init__(self, total: float, label: str, unit: str, fmt: str | None = None,
                 limit: float | None = None):
        from tqdm import tqdm

        self._limit = limit   # how far the total may grow when the work outlasts it
        self._bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, delay=DELAY_S,
                         leave=False, dynamic_ncols=True, bar_format=fmt)

    def update(self, n: float = 1) -> None:
        self._bar.update(n)

    def set(self, n: float, postfix: str | None = None) -> None:
        """Move the bar to *n* of its total (never back), with an optional note; past the total,
        the total grows (by a quarter, up to the limit) rather than the bar stalling at 100 %."""
        if n > self._bar.total and self._limit and self._bar.total < self._limit:
            self._bar.total = min(self._limit, n * 1.25)
        n = min(n, self._bar.total)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)
        if postfix:
            self._bar.set_postfix_str(postfix, refresh=False)

    def write(self, line: str) -> None:
        """Print *line* to stdout without tearing the bar."""
        self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


def bar(total: float, label: str, unit: str = "it") -> Bar | None:
    """A :class:`Bar` when :func:`wanted`, else None (callers skip their updates)."""
    return Bar(total, label, unit) if wanted() else None


class SweepBar(Bar):
    """The bar of a sweep: points done of the grid, how many run now and how many failed, the
    elapsed wall time and the ETA (from the points run in this sitting: a resumed sweep's points
    already in its database count as done from the start, not towards the rate)."""

    FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} points{postfix} "
              "[{elapsed}, ETA {remaining}]")

    def __init__(self, total: int, label: str = "sweep"):
        super().__init__(total, label, "point", self.FORMAT)
        self.failed = 0
        self.now_running = 0
        self._show()

    def _show(self, refresh: bool = True) -> None:
        note = f"{self.now_running} running, {self.failed} failed"
        self._bar.set_postfix_str(note, refresh=refresh)

    def planned(self, already_done: int) -> None:
        """*already_done* points were in the database before this sitting: done, not timed."""
        self._bar.n = self._bar.initial = self._bar.last_print_n = already_done
        self._show()

    def running(self, n: int) -> None:
        """*n* points are being run now (a drop is drawn with the point's end, which follows)."""
        if n != self.now_running:
            grew, self.now_running = n > self.now_running, n
            self._show(refresh=grew)

    def finished(self, ok: bool) -> None:
        """One point ended, well or not."""
        self.failed += not ok
        self._show(refresh=False)
        self._bar.update(1)
        self._bar.refresh()      # every point's end is drawn (update alone draws at most 10 a second)


def sweep_bar(total: int, label: str = "sweep") -> SweepBar | None:
    """A :class:`SweepBar` over *total* points when :func:`wanted`, else None."""
    return SweepBar(total, label) if wanted() else None


_SIM_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| simulated {n:.0f}/{total:.0f} s "
               "[wall {elapsed}, ETA {remaining}]")


def sim_bar(total_s: float, label: str, limit_s: float | None = None) -> Bar | None:
    """A bar over simulated seconds, with wall time and ETA, when :func:`wanted`; a run that
    outlasts *total_s* (a queue draining) extends it up to *limit_s*."""
    if not wanted() or not total_s or total_s <= 0 or total_s == float("inf"):
        return None
    return Bar(float(total_s), label, "sim s", _SIM_FORMAT, limit=limit_s)


def run_bar(data: dict, limit: float) -> Bar | None:
    """The bar of one run of the validated experiment *data*: to the workload's
    ``total_duration`` (runs drain soon after it) or to *limit*, whichever is sooner."""
    workload = data.get("workload") or {}
    total = min(limit, workload.get("total_duration") or limit)
    return sim_bar(total, data.get("name") or "simulating", limit)


def run_events(env, limit: float, bar: Bar | None = None, every: int = EVERY) -> None:
    """Step the SimPy environment *env* until its next event lies beyond *limit*, moving
    *bar* to the simulated time once every *every* events."""
    peek, step = env.peek, env.step
    if bar is None:
        if _plain_simpy(env):
            _step_until(env, limit)
            return
        while peek() <= limit:
            step()
        return
    try:
        while peek() <= limit:
            for _ in range(every):
                if peek() > limit:
                    break
                step()
            bar.set(env.now)
    finally:
        bar.close()


#: SimPy 4's own ``Environment.step`` and ``peek``, as imported (one patched since is not theirs)
_SIMPY_STEP = simpy.Environment.step if simpy.__version__.startswith("4.") else None
_SIMPY_PEEK = simpy.Environment.peek


def _plain_simpy(env) -> bool:
    """Whether *env* steps and peeks as SimPy 4's ``Environment`` does (no subclass or patch
    of its own), whose ``step`` :func:`_step_until` inlines."""
    cls = type(env)
    return (cls.step is _SIMPY_STEP and cls.peek is _SIMPY_PEEK
            and isinstance(getattr(env, "_queue", None), list))


def _step_until(env, limit: float) -> None:
    """``while env.peek() <= limit: env.step()`` for a plain ``simpy.Environment`` (SimPy
    4's ``step``, inlined: the same events in the same order, two calls fewer each, which is
    a few per cent of a serving run)."""
    from heapq import heappop

    queue = env._queue
    while queue and queue[0][0] <= limit:
        env._now, _, _, event = heappop(queue)
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            # a failed event nobody defused crashes the run, as step() raises it
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
    if not queue and limit >= float("inf"):
        env.step()                  # raises EmptySchedule, as step() does with nothing left


__all__ = ["Bar", "SweepBar", "bar", "run_bar", "run_events", "set_quiet", "sim_bar", "sweep_bar", "wanted",
           "EVERY"]

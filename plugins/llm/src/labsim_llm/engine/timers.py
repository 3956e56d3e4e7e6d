"""Callbacks at a later simulated time, without building a SimPy ``Timeout`` for each.

Every request schedules callbacks that no process waits on: its workload's next arrival (or
a trace's next row, a conversation's next turn) and the API server's hand-over to the engine
(:class:`~labsim_llm.engine.frontend.Frontend`). ``env.timeout(delay).callbacks.append(fn)``
builds a SimPy ``Timeout`` for each in SimPy's interpreted constructor, several thousand
instructions a request; so does every wait of an engine's loop for its GPU work
(:meth:`~labsim_llm.engine.replica.ReplicaShell.gpu_work`). :func:`call_later` puts a
:class:`Timer` in the same place of the same queue — ``(now + delay, NORMAL, the
environment's next event id, event)``, as ``Environment.schedule`` does, the delay as given
(an int stays an int) — so the same callbacks run at the same times in the same order; the
event loop (SimPy's ``step``, or :func:`labsim.progress.run_events`) reads of it what it
reads of any event: ``callbacks``, ``_ok`` and ``_value``. :func:`timeout` gives a process
such a :class:`Timer` to yield (SimPy's ``Process`` resumes on it as on a ``Timeout``).

That place is SimPy 4's own scheduling: an environment whose class overrides ``schedule`` or
``timeout`` (a subclass with its own queue, or a patch) gets a real ``Timeout``.

>>> import simpy
>>> env = simpy.Environment()
>>> seen = []
>>> call_later(env, 2.5, lambda event: seen.append(("timer", env.now)))
>>> env.timeout(2.5).callbacks.append(lambda event: seen.append(("timeout", env.now)))
>>> call_later(env, 1.0, lambda event: seen.append(("timer", env.now)))
>>> def waits():
...     yield timeout(env, 0.5)
...     seen.append(("process", env.now))
>>> _ = env.process(waits())
>>> env.run()
>>> seen
[('process', 0.5), ('timer', 1.0), ('timer', 2.5), ('timeout', 2.5)]
"""

from __future__ import annotations

from heapq import heappush
from typing import Any, Callable, Final

import simpy
from labsim import native

from labsim_llm import native as llm_native

#: SimPy's priority of an ordinary event (``simpy.core.NORMAL``)
NORMAL: Final = 1
#: the methods whose behaviour :func:`call_later` reproduces, as SimPy 4 defines them
_SCHEDULE: Final = simpy.Environment.schedule
_TIMEOUT: Final = simpy.Environment.__dict__["timeout"]


class Timer:
    """An event scheduled by :func:`call_later` or :func:`timeout`: what SimPy's loop and its
    ``Process`` read of an event (``callbacks``, cleared when it is processed; ``_ok``;
    ``_value``, None), for callbacks that ask nothing else of it."""

    def __init__(self, env: Any, callbacks: list) -> None:
        self.env = env
        self.callbacks: list | None = callbacks
        self._ok = True
        self._value: Any = None


def plain_schedule(env: Any) -> bool:
    """Whether *env* schedules and times out as SimPy 4's ``Environment`` does (the queue
    :func:`call_later` writes to directly); answered once per class."""
    cls = type(env)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = (getattr(cls, "schedule", None) is _SCHEDULE
                               and _inherited(cls, "timeout") is _TIMEOUT)
    return plain


#: :func:`plain_schedule`'s answers, by environment class
_PLAIN: Final[dict[type, bool]] = {}


def _inherited(cls: type, name: str) -> Any:
    """The attribute *name* as *cls* finds it in its MRO, unbound (None if none has it)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def call_later(env: Any, delay: Any, callback: Callable[[Any], Any]) -> None:
    """Call ``callback(event)`` *delay* simulated seconds from now, where and when
    ``env.timeout(delay).callbacks.append(callback)`` would (a negative *delay* is a
    ``ValueError``, as SimPy's)."""
    if not plain_schedule(env):
        env.timeout(delay).callbacks.append(callback)
        return
    if delay < 0:
        raise ValueError(f"Negative delay {delay}")
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), Timer(env, [callback])))


def timeout(env: Any, delay: Any) -> Any:
    """The event a process yields to wait *delay* simulated seconds, its value None: processed
    where and when ``env.timeout(delay)`` would be (a :class:`Timer`, which SimPy's
    ``Process`` resumes on as on any event; a real ``Timeout`` where *env* is not
    :func:`plain_schedule`)."""
    if not plain_schedule(env):
        return env.timeout(delay)
    if delay < 0:
        raise ValueError(f"Negative delay {delay}")
    event = Timer(env, [])
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), event))
    return event


__all__ = ["NORMAL", "Timer", "call_later", "plain_schedule", "timeout"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "timers", globals(), PURE)

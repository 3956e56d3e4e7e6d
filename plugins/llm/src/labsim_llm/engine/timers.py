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

That place is SimPy 4's own scheduling: an environment whose class overrides ``schedule``,
``timeout``, ``peek`` or ``now`` (a subclass with its own queue or clock, or a patch) gets a
real ``Timeout`` (:func:`plain_simpy`).

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

import heapq
import inspect
from typing import Any, Callable, Final

import simpy
from labsim import native

from labsim_llm import native as llm_native

#: SimPy's priority of an ordinary event (``simpy.core.NORMAL``)
NORMAL: Final = 1
#: what :func:`plain_simpy` finds SimPy 4's ``Environment`` itself holds: the methods
#: :func:`call_later` and :func:`timeout` stand in for (``schedule``, ``timeout``) and those
#: whose reads the engines' loops make themselves (``peek``, the ``now`` property)
_SIMPY_OWN: Final = {name: inspect.getattr_static(simpy.Environment, name)
                     for name in ("schedule", "timeout", "peek", "now")}


class Timer:
    """An event scheduled by :func:`call_later` or :func:`timeout`: what SimPy's loop and its
    ``Process`` read of an event (``callbacks``, cleared when it is processed; ``_ok``;
    ``_value``, None), for callbacks that ask nothing else of it."""

    def __init__(self, env: Any, callbacks: list) -> None:
        self.env = env
        self.callbacks: list | None = callbacks
        self._ok = True
        self._value: Any = None


def plain_simpy(env: Any) -> bool:
    """Whether *env* schedules, times out, peeks and tells the time as SimPy 4's
    ``Environment`` does: then its queue and clock may be written and read directly
    (``env._queue``, ``env._now``); answered once per class."""
    cls = type(env)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = all(inspect.getattr_static(cls, name, None) is own
                                  for name, own in _SIMPY_OWN.items())
    return plain


#: :func:`plain_simpy`'s answers, by environment class
_PLAIN: Final[dict[type, bool]] = {}


def call_later(env: Any, delay: Any, callback: Callable[[Any], Any]) -> None:
    """Call ``callback(event)`` *delay* simulated seconds from now, where and when
    ``env.timeout(delay).callbacks.append(callback)`` would (a negative *delay* is a
    ``ValueError``, as SimPy's)."""
    if plain_simpy(env):
        _schedule(env, delay, [callback])
    else:
        env.timeout(delay).callbacks.append(callback)


def timeout(env: Any, delay: Any) -> Any:
    """The event a process yields to wait *delay* simulated seconds, its value None: processed
    where and when ``env.timeout(delay)`` would be (a :class:`Timer`, which SimPy's
    ``Process`` resumes on as on any event; a real ``Timeout`` where *env* is not
    :func:`plain_simpy`)."""
    if plain_simpy(env):
        return _schedule(env, delay, [])
    return env.timeout(delay)


def now(env: Any) -> Any:
    """``env.now``: read from the clock itself where *env* is :func:`plain_simpy` (compiled,
    SimPy's ``now`` is an interpreted property call, several hundred instructions)."""
    return env._now if plain_simpy(env) else env.now


#: ``heapq.heappush`` (a module constant: compiled, a global read is then no dict lookup)
_heappush: Final = heapq.heappush
#: the time of "nothing scheduled" (SimPy's ``Infinity``)
_INF: Final = float("inf")


class Timers:
    """:func:`call_later`, :func:`timeout`, :func:`now` and ``env.peek()`` for one environment,
    for a caller that asks them all run long (an arrival stream, the API server, an engine's
    step loop): whether *env* is :func:`plain_simpy`, its queue and its event counter are
    looked up once, not at every timer (compiled, each read of an attribute of SimPy's
    environment is a generic lookup of a few hundred instructions, and ``next`` one among the
    builtins). Same events, same places in the queue, same times as the functions.

    >>> import simpy
    >>> env = simpy.Environment()
    >>> timers, seen = Timers(env), []
    >>> timers.call_later(2.0, lambda event: seen.append(("timer", timers.now())))
    >>> def waits():
    ...     yield timers.timeout(0.5)
    ...     seen.append(("process", timers.now(), timers.peek()))
    >>> _ = env.process(waits())
    >>> env.run()
    >>> seen
    [('process', 0.5, 2.0), ('timer', 2.0)]
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.plain = plain_simpy(env)
        #: SimPy's event queue (a heap) and its event counter (an ``itertools.count``): neither
        #: is ever replaced in an environment's life (read only where *env* is plain)
        self._queue: list = env._queue if self.plain else []
        self._eid: Any = env._eid if self.plain else None

    def call_later(self, delay: Any, callback: Callable[[Any], Any]) -> None:
        """:func:`call_later` in this environment."""
        if self.plain:
            self._push(delay, [callback])
        else:
            self.env.timeout(delay).callbacks.append(callback)

    def timeout(self, delay: Any) -> Any:
        """:func:`timeout` in this environment."""
        if self.plain:
            return self._push(delay, [])
        return self.env.timeout(delay)

    def now(self) -> Any:
        """``env.now`` (:func:`now`)."""
        return self.env._now if self.plain else self.env.now

    def peek(self) -> Any:
        """``env.peek()``: the time of the next event, infinity when there is none."""
        if self.plain:
            queue = self._queue
            return queue[0][0] if queue else _INF
        return self.env.peek()

    def _push(self, delay: Any, callbacks: list) -> Timer:
        """:func:`_schedule`, with the queue and counter at hand."""
        return _enqueue(self.env, self._queue, self._eid, delay, callbacks)


def _negative(delay: Any) -> bool:
    """``delay < 0`` (a float compared unboxed, compiled; anything else as Python compares)."""
    if isinstance(delay, float):
        return delay < 0.0
    return delay < 0


def _next_id(counter: Any) -> Any:
    """``next(counter)``, *counter* an endless iterator (SimPy's event ids): compiled, a loop
    takes the item through the iterator's own slot, where ``next`` would be looked up among
    the builtins and called (some 500 instructions a timer)."""
    for item in counter:
        return item
    raise RuntimeError("the event counter ended")


def _schedule(env: Any, delay: Any, callbacks: list) -> Timer:
    """A :class:`Timer` with *callbacks*, put where ``env.schedule`` puts an event *delay*
    seconds from now (*env* :func:`plain_simpy`)."""
    return _enqueue(env, env._queue, env._eid, delay, callbacks)


def _enqueue(env: Any, queue: list, eid: Any, delay: Any, callbacks: list) -> Timer:
    """A :class:`Timer` with *callbacks*, put in *env*'s *queue* where ``env.schedule`` puts
    an event *delay* seconds from now, its id from *env*'s counter *eid*."""
    if _negative(delay):
        raise ValueError(f"Negative delay {delay}")
    event = Timer(env, callbacks)
    _heappush(queue, (env._now + delay, NORMAL, _next_id(eid), event))
    return event


__all__ = ["NORMAL", "Timer", "Timers", "call_later", "now", "plain_simpy", "timeout"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "timers", globals(), PURE)

"""Timers (labsim_llm.engine.timers): callbacks and process waits without SimPy's Timeout, in
the places SimPy's Timeout would take."""

import random

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim_llm.engine import timers


def _both(module):
    """The module's call_later and timeout (pure or compiled namespace)."""
    return module["call_later"], module["timeout"]


def _namespaces():
    found = [timers.PURE]
    try:
        found.append(vars(__import__("labsim_llm.native.timers", fromlist=["PURE"])))
    except ImportError:
        pass
    return found


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.25]), st.booleans()),
                min_size=1, max_size=30))
def test_timers_fire_in_the_order_timeouts_would(plan):
    """Callbacks scheduled by call_later, mixed with SimPy timeouts at equal and different
    delays, run at the same times in the same order as when all are timeouts."""
    def fired(use_timers, call_later):
        env = simpy.Environment()
        seen = []
        for i, (delay, as_timer) in enumerate(plan):
            def note(_event, i=i):
                seen.append((i, env.now))
            if use_timers and as_timer:
                call_later(env, delay, note)
            else:
                env.timeout(delay).callbacks.append(note)
        env.run()
        return seen

    for namespace in _namespaces():
        call_later, _ = _both(namespace)
        assert fired(True, call_later) == fired(False, call_later)


def test_a_process_waits_on_a_timer_as_on_a_timeout():
    """A process that yields timeout(env, d) resumes d later with the value None, in the order a
    SimPy timeout would have resumed it, and can be interrupted while it waits."""
    for namespace in _namespaces():
        _, timeout = _both(namespace)
        for make in (timeout, lambda env, d: env.timeout(d)):
            env = simpy.Environment()
            log = []

            def sleeper(name, delays, make=make, env=env, log=log):
                for d in delays:
                    try:
                        value = yield make(env, d)
                        log.append((name, env.now, value))
                    except simpy.Interrupt:
                        log.append((name, env.now, "interrupted"))

            env.process(sleeper("a", [1.0, 0.5, 0.0]))
            victim = env.process(sleeper("b", [0.5, 3.0, 1.0]))

            def interrupter(env=env, victim=victim):
                yield env.timeout(2.0)
                victim.interrupt()

            env.process(interrupter())
            env.run()
            if make is timeout:
                ours = list(log)
            else:
                assert ours == log
        assert ("b", 2.0, "interrupted") in ours


def test_negative_delays_are_refused_as_simpy_refuses_them():
    for namespace in _namespaces():
        call_later, timeout = _both(namespace)
        env = simpy.Environment()
        with pytest.raises(ValueError, match="Negative delay"):
            call_later(env, -1.0, lambda event: None)
        with pytest.raises(ValueError, match="Negative delay"):
            timeout(env, -0.5)


def test_an_environment_with_its_own_scheduling_gets_real_timeouts():
    """A subclass that schedules its own way (or overrides timeout, or peek) is not written to
    directly: its own methods run."""
    class Counting(simpy.Environment):
        scheduled = 0

        def schedule(self, event, priority=1, delay=0):
            Counting.scheduled += 1
            super().schedule(event, priority, delay)

    class OwnTimeout(simpy.Environment):
        made = 0

        def timeout(self, delay, value=None):
            OwnTimeout.made += 1
            return super().timeout(delay, value)

    class OwnPeek(simpy.Environment):
        def peek(self):
            return super().peek()

    for namespace in _namespaces():
        call_later, timeout = _both(namespace)
        assert namespace["plain_simpy"](simpy.Environment())
        assert not namespace["plain_simpy"](OwnPeek())      # (the engines' loops read its queue)
        for cls in (Counting, OwnTimeout):
            env = cls()
            assert not namespace["plain_simpy"](env)
            seen = []
            call_later(env, 1.0, lambda event: seen.append(env.now))

            def proc(env=env):
                yield timeout(env, 2.0)
                seen.append(env.now)

            env.process(proc())
            env.run()
            assert seen == [1.0, 2.0]
        assert Counting.scheduled > 0 and OwnTimeout.made > 0
        Counting.scheduled = OwnTimeout.made = 0


def test_a_random_mix_runs_alike_pure_and_compiled():
    """The compiled twin and the pure module schedule the same events in the same places."""
    spaces = _namespaces()
    if len(spaces) < 2:
        pytest.skip("labsim_llm's compiled twins are not built here")
    runs = []
    for namespace in spaces:
        call_later, timeout = _both(namespace)
        rng = random.Random(3)
        env = simpy.Environment()
        seen = []

        def chain(_event, n=0, env=env, rng=rng, seen=seen, call_later=call_later):
            seen.append(("cb", n, env.now))
            if n < 40:
                call_later(env, rng.choice([0.0, 0.125, 0.3]), lambda e: chain(e, n + 1))

        def proc(env=env, rng=rng, seen=seen, timeout=timeout):
            for i in range(40):
                yield timeout(env, rng.choice([0.0, 0.125, 0.25]))
                seen.append(("proc", i, env.now))

        call_later(env, 0.0, chain)
        env.process(proc())
        env.run()
        runs.append(seen)
    assert runs[0] == runs[1]


def test_the_delay_is_added_as_given_as_simpy_adds_it():
    """SimPy's clock starts at the int 0 and adds a delay as given: a timer of delay 0 at the
    start leaves the clock an int, as a timeout does (and a float delay makes it a float)."""
    for namespace in _namespaces():
        call_later, timeout = _both(namespace)
        for delay in (0, 0.0, 3):
            clocks = []
            for use_timer in (True, False):
                env = simpy.Environment()
                seen = []
                if use_timer:
                    call_later(env, delay, lambda event, env=env, seen=seen: seen.append(env.now))
                else:
                    env.timeout(delay).callbacks.append(lambda event, env=env, seen=seen: seen.append(env.now))
                env.run()
                clocks.append((seen, [type(x) for x in seen]))
            assert clocks[0] == clocks[1], delay


def test_now_reads_the_clock_as_env_now_does():
    """``now(env)`` is ``env.now``: read from the clock of a plain environment (an int stays an
    int) and through the property of one whose ``now`` is its own."""
    class Shifted(simpy.Environment):
        @property
        def now(self):
            return self._now + 100

    for namespace in _namespaces():
        now = namespace["now"]
        env = simpy.Environment()
        assert now(env) == 0 and type(now(env)) is int
        env.run(until=2.5)
        assert now(env) == env.now == 2.5
        shifted = Shifted()
        assert now(shifted) == shifted.now == 100


def _timers_ways(namespace):
    """call_later and timeout through a Timers of the environment (made at each call, and
    once per environment), as the module functions are called."""
    made = {}

    def held(env):
        return made.setdefault(id(env), (env, namespace["Timers"](env)))[1]

    return [
        (lambda env, d, cb: namespace["Timers"](env).call_later(d, cb),
         lambda env, d: namespace["Timers"](env).timeout(d)),
        (lambda env, d, cb: held(env).call_later(d, cb), lambda env, d: held(env).timeout(d)),
    ]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 0.0, 0.5, 1.0, 2.25]), st.integers(0, 2)),
                min_size=1, max_size=30))
def test_a_timers_holder_schedules_as_the_functions_do(plan):
    """Timers of one environment (made once, queue and counter read then), mixed with the
    module's functions and SimPy's own timeouts and processes: the same callbacks and process
    resumptions at the same times (an int clock stays an int) in the same order as all
    timeouts; ``now`` and ``peek`` read what ``env.now`` and ``env.peek()`` read."""
    def run(namespace, way):
        env = simpy.Environment()
        timers_ = namespace["Timers"](env)
        seen = []
        for i, (delay, how) in enumerate(plan):
            def note(_event, i=i):
                seen.append((i, env.now, type(env.now), timers_.now(), timers_.peek() == env.peek()))
            if way and how == 0:
                timers_.call_later(delay, note)
            elif way and how == 1:
                namespace["call_later"](env, delay, note)
            else:
                env.timeout(delay).callbacks.append(note)

        def proc():
            for i, (delay, how) in enumerate(plan):
                yield timers_.timeout(delay) if way and how == 2 else env.timeout(delay)
                seen.append(("proc", i, env.now))

        env.process(proc())
        env.run()
        return seen

    for namespace in _namespaces():
        assert run(namespace, True) == run(namespace, False)


def test_a_timers_holder_waits_refuses_and_defers_as_the_functions_do():
    """Process waits (interrupted too), negative delays, and an environment with scheduling of
    its own, through Timers."""
    class OwnTimeout(simpy.Environment):
        made = 0

        def timeout(self, delay, value=None):
            OwnTimeout.made += 1
            return super().timeout(delay, value)

    for namespace in _namespaces():
        for call_later, timeout in _timers_ways(namespace):
            env = simpy.Environment()
            log = []

            def sleeper(env=env, log=log, timeout=timeout):
                for d in (0.5, 3.0, 1.0):
                    try:
                        value = yield timeout(env, d)
                        log.append((env.now, value))
                    except simpy.Interrupt:
                        log.append((env.now, "interrupted"))

            victim = env.process(sleeper())

            def interrupter(env=env, victim=victim):
                yield env.timeout(2.0)
                victim.interrupt()

            env.process(interrupter())
            env.run()
            assert log == [(0.5, None), (2.0, "interrupted"), (3.0, None)]
            with pytest.raises(ValueError, match="Negative delay"):
                call_later(env, -1.0, lambda event: None)
            with pytest.raises(ValueError, match="Negative delay"):
                timeout(env, -0.5)
            own = OwnTimeout()
            timers_ = namespace["Timers"](own)
            assert not timers_.plain
            seen = []
            call_later(own, 1.0, lambda event: seen.append(own.now))
            timers_.call_later(0.5, lambda event: seen.append(timers_.now()))
            assert timers_.peek() == own.peek() == 0.5
            own.run()
            assert seen == [0.5, 1.0] and OwnTimeout.made == 2 and timers_.peek() == own.peek()
            OwnTimeout.made = 0

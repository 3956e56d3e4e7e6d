"""What every LLM request workload shares: streams, sending, sessions and the concurrency cap.

A workload copy (one per target framework) builds :class:`~labsim_llm.request.Request`
objects and hands them to ``target.submit``. This module owns the parts that
do not depend on where requests come from:

* **random streams** — named per profile and quantity, seeded by the workload's
  own ``random_seed`` when given, else by the experiment seed, and drawn in
  batches (:class:`Sampler`), so every copy sees the identical sequence;
* **sending** — ``request_id`` 0, 1, 2 ... in the order requests are sent;
  ``arrival_s`` is the send time; the bounds ``num_requests`` and
  ``total_duration`` stop it;
* **sessions** — a conversation holds the plan of its follow-up turns; when a
  turn finishes (the framework calls its listeners), the next turn is sent
  after its think time, its prompt carrying the whole previous conversation;
* **the concurrency cap** — at most ``concurrency`` users busy at once. A user
  is busy from sending a request until it finishes and, inside a
  conversation, through the think time until the next turn is sent. A
  request that finds every user busy waits at the client (``arrival_s`` is
  when it is finally sent, as ``vllm bench serve --max-concurrency`` counts it);
* **open-loop arrivals** — :class:`ArrivalStream`, a request one gap after another, one event
  each.

It runs once or more per request, so it is one of labsim-llm's compiled twins
(:mod:`labsim_llm.native`); :class:`RequestWorkload` allows subclasses in plain Python (other
plugins' workloads), whose overrides it calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from labsim import native
from labsim.components import Workload
from labsim.engine import stream_key
from mypy_extensions import mypyc_attr

from labsim_llm import native as llm_native
from labsim_llm.engine.timers import Timers
from labsim_llm.request import Request
from labsim_llm.workloads.draws import Sampler, Session


@mypyc_attr(allow_interpreted_subclasses=True)     # the workloads of other plugins build on it
class RequestWorkload(Workload):
    """Base of the LLM workloads: see the module docstring for what it provides.

    Its items are :class:`labsim_llm.request.Request` objects (``makes``).

    A subclass implements :meth:`_begin` (start its arrival processes, e.g. an
    :class:`ArrivalStream`) and may implement :meth:`_next_fresh` (a new request for a user who
    became free, for closed loops).
    """

    makes = "LLM requests"

    def __init__(self, config: dict, context: Any):
        super().__init__(config, context)
        self.env: Any = context.env
        #: the environment's timers and clock (:class:`~labsim_llm.engine.timers.Timers`)
        self.timers = Timers(self.env)
        seed = config.get("random_seed")
        self.seed: int | None = int(seed) if seed is not None else None
        self.bytes_per_token: Any = config.get("bytes_per_token_estimate_for_network")
        self.num_requests: Any = config.get("num_requests")
        self.total_duration: Any = config.get("total_duration")
        self.concurrency: Any = config.get("concurrency")
        self.target: Any = None
        self.sent = 0
        self.follow_ups = 0
        self.sessions_started = 0
        self.prompt_token_sum = 0
        self.output_token_sum = 0
        self.per_profile: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy = 0
        self._waiting: deque[Request] = deque()
        self._sessions: dict[int, Session] = {}
        self._thinking = 0
        self._stopped = False
        self._open_sources = 0  # arrival processes (or closed loops) still producing
        self._next_content = 0
        self._next_session = 0
        self._depth = 0  # > 0 while inside target.submit

    # -- random streams ----------------------------------------------------------------------

    def rng(self, *names: str) -> np.random.Generator:
        """The generator of stream *names* (the workload seed when given, else the experiment's)."""
        if self.seed is None:
            return self.context.rng(*names)
        seq = np.random.SeedSequence(entropy=self.seed, spawn_key=stream_key(*names))
        return np.random.Generator(np.random.PCG64(seq))

    def distribution(self, config: dict, *names: str) -> Any:
        """A registered distribution built from *config*, drawing from stream *names*."""
        if self.seed is None:
            return self.context.distribution(config, *names)
        cls = self.context.registry.get("distributions", config["type"])
        dist = cls(config, self.rng(*names))
        prepare = getattr(dist, "prepare", None)
        if prepare is not None:
            prepare(self.context.base_dir)
        return dist

    def sampler(self, config: dict, kind: str, *names: str) -> Sampler:
        return Sampler(self.distribution(config, *names), kind)

    def content_ids(self, count: int) -> int:
        """Reserve *count* consecutive content ids; returns the first."""
        first = self._next_content
        self._next_content += count
        return first

    def new_session(self, profile: str, streaming: bool, plan: list) -> Session:
        session = Session(self._next_session, profile, streaming, plan)
        self._next_session += 1
        self.sessions_started += 1
        return session

    # -- the Workload interface ----------------------------------------------------------------

    def start(self, target: Any) -> None:
        self.target = target
        target.add_listener(self._on_finished)
        self._begin()

    def _begin(self) -> None:
        raise NotImplementedError(self)

    def _next_fresh(self) -> Request | None:
        """A fresh request for a user who just became free (closed loops), or None."""
        return None

    # -- sending -----------------------------------------------------------------------------

    def _allowed(self) -> bool:
        """False once a bound is reached (and from then on)."""
        if self._stopped:
            return False
        if (self.num_requests is not None and self.sent >= self.num_requests) or (
            self.total_duration is not None and self.timers.now() >= self.total_duration
        ):
            self.stop()
            return False
        return True

    def _room(self) -> bool:
        """False when the requests already sent or waiting reach num_requests."""
        return self.num_requests is None or self.sent + len(self._waiting) < self.num_requests

    def stop(self) -> None:
        """Send nothing more; conversations in progress end."""
        self._stopped = True
        self._waiting.clear()
        self._sessions.clear()

    def offer(self, request: Request, session: Session | None = None) -> None:
        """A new request (a fresh one, or the first turn of *session*) is ready to go."""
        if session is not None and not session.done:
            self._sessions[session.session_id] = session
            request.session_id = session.session_id
        if self.concurrency is not None and self.busy >= self.concurrency:
            self._waiting.append(request)
            return
        if self.concurrency is not None:
            self.busy += 1
        self._send(request)

    def _send(self, request: Request) -> None:
        """Submit now (the caller holds a user slot when the cap applies)."""
        if not self._allowed():
            self._release_slot()
            return
        request.request_id = self.sent
        request.arrival_s = self.timers.now()
        self.sent += 1
        if request.turn:
            self.follow_ups += 1
        self.prompt_token_sum += request.prompt_tokens
        self.output_token_sum += request.output_tokens
        self.per_profile[request.profile] = self.per_profile.get(request.profile, 0) + 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        self._depth += 1
        try:
            self.target.submit(request)
        finally:
            self._depth -= 1

    def _release_slot(self) -> None:
        """A user became free: start the next waiting or (closed loop) fresh request."""
        if self.concurrency is None:
            return
        self.busy -= 1
        if self._depth:  # called from inside target.submit (an instant rejection): refill later
            self.busy += 1
            self.timers.call_later(0, self._released_later)
            return
        while self.busy < self.concurrency and not self._stopped:
            request = self._waiting.popleft() if self._waiting else self._next_fresh()
            if request is None:
                return
            self.busy += 1
            self._send(request)

    def _released_later(self, _event: object) -> None:
        self._release_slot()

    def acts_on_finish(self, request: Request) -> bool:
        """Whether *request* finishing makes this workload act at that simulated time (a closed
        loop sends its next request, a conversation schedules its next turn), beyond counting.
        An engine that applies a step ahead of its time asks (TensorRT-LLM's spans)."""
        if self.concurrency is not None:
            return True
        sid = request.session_id
        return sid >= 0 and sid in self._sessions and not self._stopped

    def _on_finished(self, request: Request) -> None:
        self.in_flight -= 1
        session = self._sessions.get(request.session_id) if request.session_id >= 0 else None
        if session is None or request.status != "finished" or self._stopped:
            if session is not None:
                del self._sessions[request.session_id]
            self._release_slot()
            return
        think, nxt = session.follow_up(request)
        if session.done:
            del self._sessions[request.session_id]
        when = self.timers.now() + think
        if self.total_duration is not None and when >= self.total_duration:
            self._sessions.pop(request.session_id, None)
            self._release_slot()
            return
        self._thinking += 1

        def after_think(_event: object) -> None:
            self._after_think(nxt)

        self.timers.call_later(think, after_think)

    def _after_think(self, request: Request) -> None:
        self._thinking -= 1
        self._send(request)  # under the cap, the conversation kept its user slot while thinking

    # -- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict:
        out = {
            "type": self.name,
            "requests_sent": self.sent,
            "follow_up_requests": self.follow_ups,
            "sessions": self.sessions_started,
            "mean_prompt_tokens": self.prompt_token_sum / self.sent if self.sent else None,
            "mean_output_tokens": self.output_token_sum / self.sent if self.sent else None,
            "requests_per_profile": dict(self.per_profile),
            "max_in_flight": self.max_in_flight,
        }
        if self.seed is not None:
            out["random_seed"] = self.seed
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        return out


class ArrivalStream:
    """One open-loop arrival stream of a workload: a request one gap after another.

    The first gap starts when the stream's SimPy process first runs (at ``env.process``'s
    initialisation, as a process of its own would); after that each arrival is a timer's
    callback (:func:`~labsim_llm.engine.timers.call_later`), which sends the request
    (``source.fresh(workload)`` with ``source`` the fixed *profile*, else ``pick()``) and
    schedules the next arrival, so an arrival costs one event.
    The stream ends at the first arrival the workload no longer allows (a bound reached, or
    ``num_requests`` sent or waiting); the workload's ``_open_sources`` counts it while it runs.
    ``client_profiles`` runs one per profile, or one shared stream that picks a profile per
    arrival.

    >>> import simpy
    >>> class Profile:                                 # what a source gives: a request, no session
    ...     def fresh(self, wl): return f"request {len(wl.sent)}", None
    >>> class Wl:                                      # what the stream asks of its workload
    ...     env, sent, _open_sources = simpy.Environment(), [], 0
    ...     def _allowed(self): return True
    ...     def _room(self): return len(self.sent) < 3
    ...     def offer(self, request, session): self.sent.append((self.env.now, request))
    >>> wl = Wl()
    >>> ArrivalStream(wl, lambda: 0.5, profile=Profile()).start()
    >>> wl.env.run()
    >>> wl.sent, wl._open_sources
    ([(0.5, 'request 0'), (1.0, 'request 1'), (1.5, 'request 2')], 0)
    """

    def __init__(self, workload: Any, gaps: Callable[[], Any],
                 pick: Callable[[], Any] | None = None, profile: Any = None):
        self.workload = workload
        self.env: Any = workload.env
        #: the environment's timers (one each, whatever the workload: a stream only needs its env)
        self.timers = Timers(self.env)
        self.gaps = gaps
        self.pick = pick
        self.profile = profile
        #: the bound method each arrival schedules (made once: compiled, a bound method is
        #: built at every read of ``self._arrive``)
        self._arrive_call: Callable[[object], None] = self._arrive

    def start(self) -> None:
        """Start the stream (its first gap begins when SimPy initialises its process)."""
        start_source(self.env, self.workload, self._next)

    def _next(self) -> None:
        self.timers.call_later(self.gaps(), self._arrive_call)

    def _arrive(self, _event: object) -> None:
        wl = self.workload
        if not wl._allowed() or not wl._room():
            wl._open_sources -= 1
            return
        source = self.profile if self.profile is not None else self.pick()  # type: ignore[misc]
        request, session = source.fresh(wl)
        wl.offer(request, session)
        self._next()


def start_source(env: Any, workload: Any, first: Callable[[], None]) -> None:
    """Start an arrival source of *workload* (an :class:`ArrivalStream`, a trace's replay):
    *first* runs at the first step of a SimPy process, as a source that is a process of its own
    starts, so every event it schedules keeps its place in the queue; the workload's
    ``_open_sources`` counts the source from then until the source ends it."""
    env.process(_first_step(workload, first))


def _first_step(workload: Any, first: Callable[[], None]) -> Generator[Any, Any, None]:
    workload._open_sources += 1
    first()
    return
    yield  # a generator: SimPy runs its first step as it would a process's


__all__ = ["ArrivalStream", "RequestWorkload", "Sampler", "Session", "start_source"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in ("ArrivalStream", "RequestWorkload", "start_source")}

native.use_group_twin("labsim_llm", llm_native.MODULES, "request_workload", globals(), PURE)

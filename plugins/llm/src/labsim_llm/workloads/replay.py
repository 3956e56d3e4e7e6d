"""The row-by-row replay of a request trace, in a module that compiles (:mod:`labsim_llm.native`).

:class:`~labsim_llm.workloads.trace.TraceWorkload` reads and filters the trace; a
:class:`TraceReplay` then sends its rows at their times: each row becomes a
:class:`~labsim_llm.request.Request` (a conversation's later rows carry its earlier turns, so a
prefix cache sees them) and is offered to the workload at the row's time. Rows at one time are
sent together; a later row waits for a timer whose callback sends it
(:class:`~labsim_llm.engine.timers.Timers`, the replay's own: the clock and the queue looked
up once, not at every row), so a row costs at most one event.

>>> import simpy
>>> from labsim_llm.workloads.draws import Uniforms
>>> class Wl:                                     # what the replay asks of its workload
...     env, sent, _open_sources = simpy.Environment(), [], 0
...     _next = 0
...     def _allowed(self): return True
...     def content_ids(self, count):
...         self._next += count
...         return self._next - count
...     def offer(self, request): self.sent.append((self.env.now, request.prompt_tokens))
>>> wl = Wl()
>>> TraceReplay(wl, [0.0, 0.0, 1.5], [10, 20, 30], [5, 5, 5], None, 1.0,
...             Uniforms(__import__("numpy").random.default_rng(0))).start()
>>> wl.env.run()
>>> wl.sent
[(0, 10), (0, 20), (1.5, 30)]
"""

from __future__ import annotations

import math
from typing import Any

from labsim import native

from labsim_llm import native as llm_native
from labsim_llm.engine.timers import Timers
from labsim_llm.request import Request
from labsim_llm.workloads.base import start_source
from labsim_llm.workloads.draws import Uniforms


class TraceReplay:
    """Sends a trace's rows to *workload* at their *times* (seconds, ascending).

    Row ``i`` asks for ``prompts[i]`` prompt and ``outputs[i]`` output tokens; with
    *sessions*, rows of one session id are the turns of one conversation. A request streams
    with probability *streaming_p* (a coin of *coins* per row when it is below 1). The replay
    ends at the last row, or at the first row the workload no longer allows (a bound reached);
    the workload's ``_open_sources`` counts it while it runs.
    """

    def __init__(self, workload: Any, times: list[float], prompts: list[int], outputs: list[int],
                 sessions: list[int] | None, streaming_p: float, coins: Uniforms):
        self.workload = workload
        self.env: Any = workload.env
        #: the environment's timers and clock (a row's wait, the time it is compared with)
        self.timers = Timers(self.env)
        self.times = times
        self.prompts = prompts
        self.outputs = outputs
        self.sessions = sessions
        self.streaming_p = streaming_p
        self.coins = coins
        self.next_row = 0
        #: session id → (segments, prompt, output tokens, turn, output id) of its last turn
        self.last: dict[int, tuple[tuple[tuple[int, int], ...], int, int, int, int]] = {}

    def start(self) -> None:
        """Start the replay (its first rows are sent when SimPy initialises its process)."""
        start_source(self.env, self.workload, self._send_due)

    def _send_due(self) -> None:
        """Send the rows due now; wait for the next later one (or end)."""
        timers, times = self.timers, self.times
        while self.next_row < len(times):
            t = times[self.next_row]
            now = timers.now()
            if t > now:
                timers.call_later(t - now, self._waited)
                return
            if not self._send_row():
                return
        self.workload._open_sources -= 1

    def _waited(self, _event: object) -> None:
        # the row waited for is sent at the timeout's end, whatever its rounding
        if self._send_row():
            self._send_due()

    def _send_row(self) -> bool:
        """Send the next row, or end the replay (False) when the workload allows no more."""
        wl = self.workload
        if not wl._allowed():
            wl._open_sources -= 1
            return False
        i = self.next_row
        self.next_row = i + 1
        wl.offer(self.request(i))
        return True

    def request(self, i: int) -> Request:
        """Row *i* as a request (its conversation's earlier turns before its new message)."""
        wl = self.workload
        prompt, out = self.prompts[i], self.outputs[i]
        p = self.streaming_p
        streaming = p >= 1.0 or (p > 0 and self.coins() < p)
        session, turn = -1, 0
        segments: tuple[tuple[int, int], ...] | None = None
        if self.sessions is not None:
            session = self.sessions[i]
            last = self.last.get(session)
            if last is not None:
                turn = last[3] + 1
                carried = last[1] + last[2]
                if prompt > carried:
                    # the previous turn's answer (its output_id), then the new message
                    segments = (*last[0], (last[4], last[2]), (wl.content_ids(1), prompt - carried))
        if segments is None:
            segments = ((wl.content_ids(1), prompt),)
        output_id = -1
        if session >= 0:
            output_id = wl.content_ids(1)   # a later row of the session may carry this answer
            self.last[session] = (segments, prompt, out, turn, output_id)
        return Request(-1, math.nan, prompt, out, out, segments, session, turn, streaming, "trace",
                       output_id)


__all__ = ["TraceReplay"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "replay", globals(), PURE)

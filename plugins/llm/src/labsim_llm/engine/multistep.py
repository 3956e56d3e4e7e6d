"""Multi-step scheduling (vLLM 0.6 ``--num-scheduler-steps N``): when the scheduler may run.

vLLM 0.6.0 added multi-step scheduling to hide its per-step CPU cost: a decode
batch, once scheduled, runs ``N`` forward passes back to back
(``num_lookahead_slots = N − 1`` KV slots are reserved for it) and the
scheduler is not called again until the round is over; a prefill batch runs
a single step (``Scheduler._get_num_lookahead_slots(is_prefill=True)`` is 0,
so ``init_multi_step`` gets ``num_scheduler_steps = 1``). Source: vLLM 0.6.0
``vllm/core/scheduler.py`` and ``vllm/engine/llm_engine.py`` (the engine only
calls ``schedule()`` when the cached multi-step state has no steps left), and
the vLLM 0.6.0 release blog ("multi-step scheduling ... schedule once and run
N steps"). A request that arrives during a round therefore waits for the round
to finish before it can be prefilled: its TTFT grows by ~(N/2) decode steps on
average, and streamed tokens come in bursts of N (the SGLang benchmark of vLLM
0.6.0, ``benchmark/benchmark_vllm_060/README.md``, shows median ITL ~10× TPOT).

:class:`MultiStepGate` is the scheduler's bookkeeping for it, kept apart from
any one engine's scheduler so an engine can apply it with three calls:

>>> gate = MultiStepGate(10)
>>> gate.may_admit()            # nothing running yet: schedule freely
True
>>> gate.advance(prefill=False) # a decode-only step starts a round of 10
>>> gate.may_admit(), gate.steps_left
(False, 9)
>>> gate.advance(prefill=False, steps=9)
>>> gate.may_admit()
True
>>> gate.advance(prefill=False); gate.may_admit(num_running=0)   # the round's requests all left
True

With ``N = 1`` (the default, and vLLM v1, which has no multi-step) the gate
is always open.
"""

from __future__ import annotations


class MultiStepGate:
    """Whether a scheduler may admit new requests, under ``num_scheduler_steps`` = *steps*.

    ``advance(prefill, steps)`` is called once per executed step (or once for a
    run of *steps* identical decode steps): a step with prefill work is a round
    of its own; a decode-only step that starts a round opens ``N − 1`` more.
    ``may_admit()`` is False while a round has steps left.
    """

    __slots__ = ("num_steps", "steps_left")

    def __init__(self, num_scheduler_steps: int = 1):
        self.num_steps = max(1, int(num_scheduler_steps or 1))
        self.steps_left = 0

    @property
    def active(self) -> bool:
        """True when multi-step scheduling is on (N > 1)."""
        return self.num_steps > 1

    def may_admit(self, num_running: int = 1) -> bool:
        """True when the scheduler runs this step: no multi-step round in progress, or the
        round's requests have all finished (*num_running* = 0: the round ends with them)."""
        if num_running <= 0:
            self.steps_left = 0
        return self.steps_left <= 0

    def advance(self, prefill: bool, steps: int = 1) -> None:
        """Account for *steps* executed steps; *prefill* when the (first) step had prefill work."""
        if self.num_steps <= 1 or steps <= 0:
            return
        if prefill:
            self.steps_left = 0          # a prefill batch is a single-step round
            return
        left, rest = self.steps_left, int(steps)
        if left > 0:                     # finish the round in progress
            used = min(left, rest)
            left, rest = left - used, rest - used
        if rest > 0:                     # then whole rounds of N, the last one maybe partial
            left = (self.num_steps - rest % self.num_steps) % self.num_steps
        self.steps_left = left

    def span_limit(self, has_waiting: bool) -> int:
        """Most identical decode steps an engine may fast-forward in one event after
        :meth:`advance` counted the first: the rest of the round when requests are waiting
        (they are admitted when it ends), unbounded otherwise."""
        if self.num_steps > 1 and has_waiting:
            return max(1, self.steps_left + 1)
        return 1 << 30

    def overhead_share(self) -> float:
        """Share of the per-step scheduling CPU cost paid by the next step: 1 when it starts a
        round (the scheduler runs), 0 inside one (vLLM's point of multi-step: the CPU work of
        scheduling and input preparation is paid once per round)."""
        return 1.0 if self.steps_left <= 0 else 0.0


__all__ = ["MultiStepGate"]

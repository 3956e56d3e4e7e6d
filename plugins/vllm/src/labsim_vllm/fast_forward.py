"""Fast-forward: a run of identical decode steps taken as one event.

With ``fast_forward`` a step whose batch is only decodes and would repeat
unchanged — no arrival, no completion, no block it cannot get — is repeated
in one event for as many iterations as it stays unchanged; an arrival during
the run cuts it at the iteration in progress. The iterations are priced up to
the next scheduled event, and the process sleeps until the last one priced
ends: an arrival during that one changes nothing before it ends, and only one
during an earlier iteration interrupts the sleep. A span whose last iteration ends
before the next scheduled event, and finishes nobody anyone acts on at its time, is landed at
once, ahead of the clock, as the step loop lands a step (below). The result is identical to
one event per iteration (tested). It asks the shell's
:meth:`~labsim_llm.engine.replica.ReplicaShell.gpu_is_alone` first, and its GPU
time passes through :meth:`~labsim_llm.engine.replica.ReplicaShell.gpu_work`.

Any other step (prompts in it, or a decode step no span is taken for) that ends before the
next scheduled event, and within the run's ``max_simulation_time``, is landed at once by the
step loop, ahead of the clock, when nobody acts on landing it at its time — nobody finishes
in it (:meth:`~labsim_vllm.pipeline_span.SpanSteps.finishing`), or only requests no
closed loop or conversation waits on (:meth:`labsim_vllm.scheduler.Replica.finishes_unseen`),
and V0's output lag holds nothing: until it ends nothing else happens, so its timeout would
change nothing but the time (:meth:`labsim_vllm.scheduler.Replica.run`). Before it idles the
engine waits for its clock, so a run that drains ends when its last step ends.

:class:`FastForward` is a part of :class:`labsim_vllm.scheduler.Replica`.
"""

from __future__ import annotations

import bisect
import heapq

import numpy as np
from simpy import Interrupt

from labsim import native
from labsim_llm.engine.step_runs import extend_ends, gaps_and_block_seconds, span_blocks
from labsim_llm.engine.timers import plain_simpy
from labsim_vllm.seq import MAX_SPAN, Span, Step
from labsim_vllm.shared_span import SharedSpan

INF = float("inf")

#: spans of at least this many steps are committed with arrays (fewer: a plain loop is quicker;
#: callgrind puts the two level at about 75 steps) — in pure Python: the compiled loop
#: (labsim_llm.native) is quicker at any length
LONG_SPAN = 1 << 62 if native.compiled("labsim_llm.native.step_runs") else 72


class FastForward(SharedSpan):
    """Spans of identical decode steps (a part of the replica)."""

    def _decode_price(self, b: int):
        """``f(ctx)`` = :meth:`_price` ``((), b, ctx)``, bit for bit (the pricer's per-batch
        decode pricer when it has one)."""
        make = getattr(self.pricer, "decode_step_fn", None)
        overhead = self.overhead
        per_req = self.overhead_per_req * b
        if make is None:
            step_time = self.pricer.step_time
            return lambda ctx: step_time((), b, ctx) + overhead + per_req
        step = make(b)
        return lambda ctx: step(ctx) + overhead + per_req

    def _decode_prices(self, b: int, ctx0: int, maker: str = "decode_steps_fn"):
        """``f(j0, j1)`` → the list of :meth:`_decode_price` ``(b)`` at contexts
        ``ctx0 + b·j`` for *j* in ``j0 … j1 − 1``, bit for bit (priced in one loop when the
        pricer can: by its *maker*, ``decode_steps_fn`` keeping the prices found by context,
        ``decode_run_fn`` working each out, kept per batch size: :meth:`_run_fn`)."""
        run = None
        if ctx0 >= b:
            if maker == "decode_run_fn":
                run = self._run_fn(b)
            else:
                make = getattr(self.pricer, maker, None)
                run = make(b, self.overhead, self.overhead_per_req * b) if make is not None else None
        if run is None:
            price = self._decode_price(b)
            return lambda j0, j1: [price(ctx0 + b * j) for j in range(j0, j1)]
        return lambda j0, j1: run(ctx0 + b * j0, j1 - j0)

    #: batch size → the pricer's ``decode_run_fn`` with this engine's overheads (None: it has
    #: none), made as spans ask
    _run_fns: dict | None = None

    def _run_fn(self, b: int):
        """What :meth:`_decode_prices` ``(b, ctx0, "decode_run_fn")`` prices with, for any
        *ctx0* ≥ *b*: ``f(first_context, count)``, or None."""
        fns = self._run_fns
        if fns is None:
            fns = self._run_fns = {}
        run = fns.get(b, False)
        if run is False:
            make = getattr(self.pricer, "decode_run_fn", None)
            run = fns[b] = make(b, self.overhead, self.overhead_per_req * b) if make is not None else None
        return run

    def _span(self, step: Step) -> Span | None:
        """How many steps would repeat *step* (the whole group decoding) unchanged, with the
        blocks they need (cumulated from the second on) and the first one's decode context."""
        bs = self.block_size
        g1 = self.G - 1                                     # the group step *step* is
        heap, fin = self._fin_keys, self._fin
        while heap[0] not in fin:
            heapq.heappop(heap)
        k_max = min(heap[0] - g1, MAX_SPAN)
        if self.multi_step:     # (else the gate sets no limit: no call into it)
            k_max = min(k_max, self.gate.span_limit(bool(self.waiting)))
        if k_max <= 1:
            return None
        # blocks the steps after the first need: members cross a block boundary every bs steps,
        # so the first s of them need (s // bs) · nD + prefix[s % bs]; k: the first s whose
        # need exceeds the free blocks
        per = self._nD
        k, prefix = span_blocks(self._cnt, (g1 + 1) % bs, self.pool.num_free, per, k_max)
        if k <= 1:
            return None
        return k, (prefix, per), step.decode_ctx

    #: about how long the latest span's last step lasted: how far the next span first prices
    #: (only the number of steps priced depends on it, never a result)
    _step_s = 0.0

    def _bounds(self, bounds: list, least: int, k: int, horizon: float, ctx0: int,
                start: float, step_s: float) -> None:
        """Extend *bounds* (end times of a span's steps, from *start*; empty: none priced
        yet) to at least *least* steps and past *horizon*, at most *k* (*step_s*: about how
        long a step lasts)."""
        b = self._nD
        t = bounds[-1] if bounds else start
        j = len(bounds)
        if j < k and (j < least or t < horizon):
            # step by step: t += price of step j, until j == k or (j ≥ least and t ≥ horizon);
            # the prices come a chunk at a time (worked out in one loop: a span's contexts
            # seldom recur), as many as should reach the horizon (step_runs.extend_ends)
            prices = self._decode_prices(b, ctx0, "decode_run_fn")
            if step_s > 0 and horizon - t < MAX_SPAN * step_s:
                chunk = 2 + max(0, int((horizon - t) / step_s))
            else:
                chunk = k
            extend_ends(bounds, prices, t, j, k, least, horizon, chunk)

    def _commit_span(self, step: Step, span: Span, j: int, start: float, bounds: list[float]) -> None:
        """Apply the first *j* iterations of a fast-forward span: the engine's clock at the end
        of the last, their work and outputs, and the step gate past them."""
        self.clock = bounds[j - 1]
        k, blocks, ctx0 = span
        b = self._nD
        prefix, per = blocks
        bs = len(prefix) - 1
        q, r = divmod(j - 1, bs)
        extra = q * per + prefix[r]                 # the blocks steps 2..j need (_span)
        pool = self.pool
        if extra:
            pool.allocate(extra)
        used = pool.num_used                        # (as the steps' row has it)
        used0 = used - extra
        itl = self.metrics.itl
        # from the group's last decode (prompts may have run since)
        if self._fresh:
            self._group_gaps(bounds[0], self._g_end)
        else:
            itl.add_uniform(bounds[0] - self._g_end, self._nW)     # (_group_gaps with none fresh)
        n_warm = self._nW
        end = bounds[j - 1]
        if j >= LONG_SPAN:
            # gaps_and_block_seconds as arrays: the same subtractions and products, summed in
            # order (numpy's accumulate adds one element after another, as its loop does)
            ends = np.array([start, *bounds[:j]], dtype=float)
            gaps = ends[1:] - ends[:-1]
            steps = np.arange(j)
            need = used0 + ((steps // bs) * per + np.asarray(prefix, dtype=np.int64)[steps % bs])
            kv_seconds = float(np.add.accumulate(need * gaps)[-1])
            gaps = gaps.tolist()
        else:
            gaps, kv_seconds = gaps_and_block_seconds(bounds, j, start, used0, prefix, per)
        if n_warm and j > 1:
            itl.add_repeated_each(gaps[1:], n_warm)
        self._step_s = gaps[-1]
        pricer = self.pricer
        if hasattr(pricer, "decode_work_sum"):
            flops, nbytes = pricer.decode_work_sum(b, ctx0, b, j)
        else:
            flops = nbytes = 0.0
            for i in range(j):
                f, by = pricer.work((), b, ctx0 + b * i)
                flops += f
                nbytes += by
        self.G += j - 1
        self._g_end = end
        self.metrics.step(self.index, start, end - start, j, b, 0, b, b, len(self.waiting),
                          used, flops, nbytes, kv_seconds)
        self._after_step([], False, end)
        if self.multi_step:
            self.gate.advance(False, j - 1)

    def _cut_span(self) -> None:
        """A request arrived during a span: it ends at the step in progress. The process, which
        waits for the end of the last step priced, is woken now only if that is a later one."""
        if self._span_cut:
            return
        self._span_cut = True
        bounds = self._span_bounds
        assert bounds is not None                   # (a span runs: wake() asks)
        if len(bounds) < 2 or self.env.now <= bounds[-2]:
            self.process.interrupt()

    def _due_in(self) -> float:
        """How far ahead a span that woke before anything cut it prices: behind a router (most
        events another replica's) one mean gap between this engine's requests; a lone replica
        only until its next request is due, at that gap after the latest one (0.0 if overdue),
        as the event that woke it usually hands that request on — and 0.0 while its API server
        holds a request (the server hands it on at an event of its own, which should meet the
        last step priced rather than interrupt the wait). Only the number of wake-ups and of
        steps priced depends on it, never a result."""
        if not self._lone:
            return self._gap_in
        if self.owner.frontend.pending():
            return 0.0
        due = self._last_in + self._gap_in - self.env.now
        return due if due > 0.0 else 0.0

    def _run_span(self, step: Step, span: Span, start: float):
        """Run the span *span* of decode steps from *start* (its first step *step*, priced
        here with the rest), cut at the step in progress when a request arrives; then apply
        the steps run (``yield from``)."""
        env = self.env
        # the steps are priced as the span goes, up to the step in progress at the
        # next scheduled event (only then can a request arrive and cut the span)
        k = span[0]
        bounds: list[float] = []
        # an arrival sets _span_cut (see _cut_span), and interrupts the wait only when it
        # comes during a step before the last one priced
        self._span_bounds = bounds
        self._span_cut = False
        more = 0                    # first, only as far as the next scheduled event
        # ... or, while events that cannot cut a span wake this engine's spans (behind a
        # router most events are other engines'), further ahead (_due_in)
        ahead = self._due_in() if self._woken_uncut else 0.0
        woken_uncut = False
        done = None
        # SimPy 4's own queue and clock (timers.plain_simpy), read directly
        plain = plain_simpy(env)
        queue: list = env._queue if plain else []
        while True:
            if plain:
                horizon = queue[0][0] if queue else INF
                at = env._now + ahead
            else:
                horizon, at = env.peek(), env.now + ahead
            self._bounds(bounds, len(bounds) + more or 1, k, max(horizon, at), span[2],
                         start, (bounds[-1] - (bounds[-2] if len(bounds) > 1 else start)) if bounds
                         else self._step_s)
            more = 2 * more or 1
            if len(bounds) == k:
                done = self._lands_ahead(k, bounds[-1])
                if done is not None:
                    j = k           # landed at once: nothing can cut it, nobody sees its end
                    break
            try:
                yield self.gpu_work(max(0.0, bounds[-1] - (env._now if plain else env.now)))
            except Interrupt:
                pass
            now = env._now if plain else env.now
            if self._span_cut and (now < bounds[-1] or len(bounds) < k):
                j = min(bisect.bisect_left(bounds, now) + 1, len(bounds))
                if bounds[j - 1] > now:
                    self._span_bounds = None
                    yield self.gpu_work(bounds[j - 1] - now)
                break
            if len(bounds) == k:
                j = k
                break
            woken_uncut = True      # the steps priced ran out before anything cut the span
            ahead = self._due_in()
        self._woken_uncut = woken_uncut
        self._span_bounds = None
        self._commit_span(step, span, j, start, bounds)
        if done:
            self.owner.last_left_s = bounds[-1]     # (one event: env.now then)

    def _lands_ahead(self, k: int, end: float):
        """Whether a span whose *k* steps are all priced, the last ending at *end*, is landed
        at once, ahead of the clock, as the step loop lands a step
        (:meth:`labsim_vllm.scheduler.Replica.run`): it ends before the next scheduled event
        (no request can arrive during it) and within the run's time limit, and the members it
        finishes, if any, finish unseen
        (:meth:`~labsim_vllm.scheduler.Replica.finishes_unseen`): then its timeout would change
        nothing but the time. Returns their requests (an empty list if none), else None."""
        if not (self.gpus.exclusive and end < self.timers.peek() and end <= self.time_limit):
            return None
        members = self._fin.get(self.G + k - 1)
        if not members:
            return []
        done = [seq.req for seq in members]
        return done if self.finishes_unseen(done) else None


__all__ = ["FastForward"]

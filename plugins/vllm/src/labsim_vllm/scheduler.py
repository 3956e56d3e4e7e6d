"""One vLLM v1 engine replica: its scheduler, its KV cache and its step loop.

The scheduler follows ``vllm/v1/core/sched/scheduler.py`` (0.10/0.11; see
docs/engine_behaviour.md §1): each step first walks the running requests in
order, giving each ``min(tokens it lacks, budget left)`` tokens (chunked
prefill falls out of that), allocating KV blocks for them and, when blocks
run out, preempting the *last* running request by recompute (its blocks are
freed, its computed tokens reset, it goes back to the front of the waiting
queue). Then, only if nothing was preempted, waiting requests are admitted in
FCFS order with their prefix-cache hit, until the budget, ``max_num_seqs``
or the KV cache stops it (head-of-line: the first that does not fit stops
admission).

The loop prices each step through the cost model and advances the clock.
With ``fast_forward`` a step whose batch is only decodes and would repeat
unchanged — no arrival, no completion, no block it cannot get — is repeated
in one event for as many iterations as it stays unchanged; an arrival during
the run cuts it at the iteration in progress. The result is identical to one
event per iteration (tested).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np

from labsim_llm.engine.kv_cache import BlockPool, block_keys

#: longest run of identical decode steps taken as one event (bounds the numpy work per event)
MAX_SPAN = 2048


class Seq:
    """The engine's state of one request."""

    __slots__ = ("req", "num_tokens", "computed", "out", "target", "keys", "hashed", "held",
                 "n_reg", "last_token", "warm", "admitted")

    def __init__(self, req, warm: bool):
        self.req = req
        self.num_tokens = req.prompt_tokens      # tokens that exist (prompt + generated)
        self.computed = 0                         # tokens whose KV is (being) computed
        self.out = 0                              # tokens generated
        self.target = req.output_tokens
        self.keys = None                          # prefix-cache keys of full prompt blocks
        self.hashed: list = []                    # keys of cached blocks this request holds
        self.held = 0                             # KV blocks held
        self.n_reg = 0                            # next prompt block to register in the cache
        self.last_token = math.nan
        self.warm = warm                          # counts in the statistics (after warm-up)
        self.admitted = False


class Step:
    """What one scheduler step runs: ``(seq, new_tokens, computed_before)`` entries."""

    __slots__ = ("entries", "preempted", "chunks", "decodes", "decode_ctx", "pure_decode")

    def __init__(self, entries, preempted: bool):
        self.entries = entries
        self.preempted = preempted
        chunks = []
        decodes = 0
        ctx = 0
        for seq, n, before in entries:
            if n == 1 and seq.out > 0 and before == seq.num_tokens - 1:
                decodes += 1
                ctx += before + 1
            else:
                chunks.append((n, before))
        self.chunks = chunks
        self.decodes = decodes
        self.decode_ctx = ctx
        self.pure_decode = not chunks and not preempted


class Replica:
    """A vLLM engine replica (``tp × pp`` GPUs) running its step loop as a SimPy process.

    :param owner: the framework (its metrics, ``notify_finished`` and config).
    :param pricer: a :class:`labsim_llm.engine.StepPricer`.
    :param num_blocks: KV-cache blocks.
    """

    def __init__(self, owner, index: int, pricer, num_blocks: int, cfg: dict):
        self.owner = owner
        self.index = index
        self.env = owner.context.env
        self.pricer = pricer
        self.metrics = owner.metrics
        self.block_size = cfg["block_size"]
        self.pool = BlockPool(num_blocks, self.block_size, cfg["enable_prefix_caching"])
        self.caching = cfg["enable_prefix_caching"]
        self.chunked = cfg["enable_chunked_prefill"]
        self.max_seqs = cfg["max_num_seqs"]
        self.max_tokens = cfg["max_num_batched_tokens"]
        self.overhead = cfg["step_overhead_s"] + cfg["scheduler_iteration_delay_s"]
        self.overhead_per_req = cfg["step_overhead_per_request_s"]
        self.fast_forward = cfg["fast_forward"]
        self.warm_up = owner.metrics.warm_up
        self.running: list[Seq] = []
        self.waiting: deque[Seq] = deque()
        self.clock = 0.0
        self._wake = None
        self._arrival = None
        self.process = None

    # -- interface with the framework --------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests queued or running here."""
        return len(self.running) + len(self.waiting)

    def start(self) -> None:
        self.process = self.env.process(self._loop())

    def submit(self, req) -> None:
        """Queue an admitted request (the framework has checked its length)."""
        req.replica = self.index
        self.waiting.append(Seq(req, req.arrival_s >= self.warm_up))
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()

    def pending(self):
        """Every request still here (for the end-of-run ``unfinished`` rows)."""
        return [s.req for s in self.running] + [s.req for s in self.waiting]

    # -- scheduling (vLLM v1 Scheduler.schedule) ----------------------------------------

    def _preempt(self, seq: Seq) -> None:
        self.pool.free(seq.hashed, seq.held - len(seq.hashed))
        seq.hashed = []
        seq.held = 0
        seq.n_reg = 0
        seq.computed = 0
        seq.req.preemptions += 1
        self.metrics.preemptions += 1
        self.waiting.appendleft(seq)

    def _register(self, seq: Seq, upto: int) -> None:
        """Cache the full prompt blocks covered by the first *upto* tokens."""
        keys = seq.keys
        full = min(upto // self.block_size, len(keys))
        pool = self.pool
        while seq.n_reg < full:
            key = keys[seq.n_reg]
            if pool.register(key):
                seq.hashed.append(key)
            seq.n_reg += 1

    def schedule(self) -> Step:
        """Form one step, allocating its KV blocks (and preempting when they run out)."""
        bs = self.block_size
        pool = self.pool
        budget = self.max_tokens
        entries = []
        running = self.running
        preempted = False
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            n = seq.num_tokens - seq.computed
            if n > budget:
                n = budget
            need = -(-(seq.computed + n) // bs) - seq.held
            ok = True
            while need > pool.num_free:
                victim = running.pop()
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    ok = False
                    break
            if not ok:
                break
            if need > 0:
                pool.allocate(need)
                seq.held += need
            entries.append((seq, n, seq.computed))
            budget -= n
            i += 1
        if not preempted:
            waiting = self.waiting
            skipped = []
            while waiting and budget > 0 and len(running) < self.max_seqs:
                seq = waiting[0]
                hits = []
                if self.caching:
                    if seq.keys is None:
                        seq.keys = block_keys(seq.req.segments, bs)
                    n_hit = pool.match(seq.keys, (seq.num_tokens - 1) // bs)
                    hits = seq.keys[:n_hit]
                hit_tokens = len(hits) * bs
                n = seq.num_tokens - hit_tokens
                if not self.chunked and n > budget:
                    skipped.append(waiting.popleft())
                    continue
                if n > budget:
                    n = budget
                need = -(-(hit_tokens + n) // bs) - len(hits)
                if need + (pool.evictable(hits) if hits else 0) > pool.num_free:
                    break
                waiting.popleft()
                if hits:
                    pool.touch(hits)
                pool.allocate(need)
                seq.hashed = list(hits)
                seq.n_reg = len(hits)
                seq.held = len(hits) + need
                seq.computed = hit_tokens
                if not seq.admitted:
                    seq.admitted = True
                    seq.req.cached_prompt_tokens = hit_tokens
                    seq.req.first_scheduled_s = self.clock
                running.append(seq)
                entries.append((seq, n, hit_tokens))
                budget -= n
            for seq in reversed(skipped):
                waiting.appendleft(seq)
        step = Step(entries, preempted)
        caching = self.caching
        for seq, n, before in entries:
            seq.computed = before + n
            if caching and seq.n_reg < len(seq.keys or ()):
                self._register(seq, seq.computed)
        return step

    # -- pricing ------------------------------------------------------------------------

    def _price(self, chunks, decodes: int, ctx: int) -> float:
        rows = len(chunks) + decodes
        return (self.pricer.step_time(chunks, decodes, ctx) + self.overhead
                + self.overhead_per_req * rows)

    # -- finishing a step ---------------------------------------------------------------

    def _commit(self, step: Step, start: float, end: float) -> None:
        """Apply one step's outputs at time *end*."""
        finished = []
        gaps = []
        itl = self.metrics.itl
        for seq, n, before in step.entries:
            if seq.computed < seq.num_tokens:
                continue                                    # a prefill chunk, not the last one
            seq.out += 1
            seq.num_tokens += 1
            if seq.out == 1:
                seq.req.first_token_s = end
            elif seq.warm:
                gaps.append(end - seq.last_token)
            seq.last_token = end
            if seq.out >= seq.target:
                finished.append(seq)
        if gaps:
            itl.add(gaps)
        tokens = sum(n for _, n, _ in step.entries)
        flops, nbytes = self.pricer.work(step.chunks, step.decodes, step.decode_ctx)
        used = self.pool.num_used
        self.metrics.step(self.index, start, end - start, 1, tokens, len(step.chunks),
                          step.decodes, len(self.running), len(self.waiting), used, flops, nbytes,
                          used * (end - start))
        if finished:
            self._finish(finished, end)

    def _finish(self, finished, end: float) -> None:
        done = set(map(id, finished))
        self.running = [s for s in self.running if id(s) not in done]
        for seq in finished:
            self.pool.free(seq.hashed, seq.held - len(seq.hashed))
            seq.hashed = []
            seq.held = 0
            req = seq.req
            req.status = "finished"
            req.finish_s = end
            self.metrics.request_done(req)
            self.owner.request_left(req)

    # -- fast forward -------------------------------------------------------------------

    def _span(self, step: Step, dt: float):
        """Steps 2..K that would repeat *step* unchanged: their durations and block needs."""
        running = self.running
        bs = self.block_size
        c = np.fromiter((s.computed for s in running), dtype=np.int64, count=len(running))
        rem = np.fromiter((s.target - s.out for s in running), dtype=np.int64, count=len(running))
        held = np.fromiter((s.held for s in running), dtype=np.int64, count=len(running))
        k_max = min(int(rem.min()), MAX_SPAN)
        if k_max <= 1:
            return None
        s = np.arange(1, k_max, dtype=np.int64)          # step s+1 needs blocks for c + s tokens
        need = np.maximum(-(-(c[:, None] + s[None, :]) // bs) - held[:, None], 0).sum(axis=0)
        ok = need <= self.pool.num_free
        k = k_max if ok.all() else int(np.argmin(ok)) + 1
        if k <= 1:
            return None
        b = len(running)
        ctx0 = int(c.sum())
        dts = [dt]
        for j in range(1, k):
            ctx = ctx0 + b * j
            dts.append(self._price((), b, ctx))
        cum_need = np.concatenate(([0], need[: k - 1]))
        return k, dts, cum_need, c, held, ctx0

    def _commit_span(self, step: Step, span, j: int, start: float, bounds) -> None:
        """Apply the first *j* iterations of a fast-forward span."""
        k, dts, cum_need, c, held, ctx0 = span
        running = self.running
        b = len(running)
        bs = self.block_size
        extra = int(cum_need[j - 1])
        if extra:
            self.pool.allocate(extra)
            new_held = np.maximum(held, -(-(c + (j - 1)) // bs))
            for seq, h in zip(running, new_held.tolist()):
                seq.held = h
        used0 = self.pool.num_used - extra
        itl = self.metrics.itl
        first_end = bounds[0]
        warm = [s.warm for s in running]
        gaps = [first_end - s.last_token for s, w in zip(running, warm) if w]
        if gaps:
            itl.add(gaps)
        n_warm = sum(warm)
        end = bounds[j - 1]
        kv_seconds = 0.0
        flops = nbytes = 0.0
        pricer = self.pricer
        prev = start
        for i in range(j):
            d = bounds[i] - prev            # the same subtraction one event per step makes
            prev = bounds[i]
            if i and n_warm:
                itl.add_repeated(d, n_warm)
            kv_seconds += (used0 + int(cum_need[i])) * d
            f, by = pricer.work((), b, ctx0 + b * i)
            flops += f
            nbytes += by
        finished = []
        for seq in running:
            seq.computed += j - 1
            seq.out += j
            seq.num_tokens += j
            seq.last_token = end
            if seq.out >= seq.target:
                finished.append(seq)
        self.metrics.step(self.index, start, end - start, j, b, 0, b, b, len(self.waiting),
                          self.pool.num_used, flops, nbytes, kv_seconds)
        if finished:
            self._finish(finished, end)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self):
        env = self.env
        while True:
            if not self.running and not self.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                self.clock = max(self.clock, env.now)
                continue
            step = self.schedule()
            if not step.entries:
                raise RuntimeError("vLLM replica formed an empty step with work pending")
            start = self.clock
            dt = self._price(step.chunks, step.decodes, step.decode_ctx)
            if self.fast_forward and step.pure_decode and len(step.entries) == len(self.running):
                span = self._span(step, dt)
                if span is not None:
                    bounds = []
                    t = start
                    for d in span[1]:
                        t += d
                        bounds.append(t)
                    self._arrival = env.event()
                    yield env.timeout(max(0.0, bounds[-1] - env.now)) | self._arrival
                    arrived = self._arrival.triggered and env.now < bounds[-1]
                    self._arrival = None
                    j = len(bounds)
                    if arrived:
                        j = bisect.bisect_left(bounds, env.now) + 1
                        if bounds[j - 1] > env.now:
                            yield env.timeout(bounds[j - 1] - env.now)
                    self.clock = bounds[j - 1]
                    self._commit_span(step, span, j, start, bounds)
                    continue
            self.clock = start + dt
            yield env.timeout(max(0.0, self.clock - env.now))
            self._commit(step, start, self.clock)


__all__ = ["Replica", "Seq", "Step", "MAX_SPAN"]

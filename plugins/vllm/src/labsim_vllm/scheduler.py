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

``engine_version: v0`` without chunked prefill follows vLLM 0.6's V0
scheduler (``vllm/core/scheduler.py``, ``_schedule_default``) instead: when
whole waiting prompts can start, a step runs only them (FCFS, keeping 1 % of
the blocks free); otherwise it runs the decodes and admits nobody.

The loop prices each step through the cost model and advances the clock
through the shell's GPU seam (:class:`labsim_llm.engine.replica.ReplicaShell`,
which also holds the waiting queue, the idle wait, finishing and the prefix-cache
lookups). With ``fast_forward`` runs of identical decode steps are one event
(:mod:`labsim_vllm.fast_forward`).

Bookkeeping costs O(changes) per step, not O(running requests): requests that
decode form the *decode group* (:mod:`labsim_vllm.decode_group`), kept as
aggregates; requests still prefilling — a few at the tail of the running
order — are handled one by one, exactly as vLLM does.

The parts live in modules of their own: :mod:`labsim_vllm.v1` (v1 scheduling),
:mod:`labsim_vllm.v0` (V0's prompt steps and output lag),
:mod:`labsim_vllm.decode_group`, :mod:`labsim_vllm.fast_forward` and
:mod:`labsim_vllm.seq` (per-request and per-step state). The replica's classes are layers,
each a subclass of the one below it; :mod:`labsim_vllm.state` lists them and declares, typed,
the state they share.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

from labsim_llm.engine.kv_cache import BlockPool
from labsim_llm.engine.multistep import MultiStepGate
from labsim_llm.engine.timers import plain_simpy

from labsim_vllm.pipeline_span import NO_ROW_QUEUES
from labsim_vllm.seq import MAX_SPAN, V0_WATERMARK, Seq, Step, _by_no
from labsim_vllm.v1 import V1Scheduler


#: weight of the latest gap between requests in their moving average (how far a span prices
#: ahead when spans wake before anything cuts them: :meth:`~labsim_vllm.fast_forward.FastForward._run_span`)
GAP_WEIGHT = 0.125

INF = math.inf


class Replica(V1Scheduler):
    """A vLLM engine replica (``tp × pp`` GPUs) running its step loop as a SimPy process.

    :param owner: the framework (its metrics, ``notify_finished`` and config).
    :param pricer: a :class:`labsim_llm.engine.StepPricer`.
    :param num_blocks: KV-cache blocks.
    :param pool: a KV cache shared with other engines (else one of *num_blocks* of its own).
    :param pipeline: the :class:`~labsim_llm.engine.pipeline.StagePipeline` that times this
        engine's batches when several are in flight (pipeline parallelism), else None.
    :param peers: the :class:`~labsim_llm.engine.pipeline.PipelinedReplica` this engine is
        one of, to wait on when the others hold the KV blocks.
    :param span: under PP with fast-forward, the replica's
        :class:`~labsim_vllm.pipeline_span.PipelineSpan`, which lands decode-only batches
        without an event each; else None.
    """

    #: keep decoding requests as a group (False: every step walks every request, for tests)
    BULK = True

    def __init__(self, owner, index: int, pricer, num_blocks: int, cfg: dict, *, pool=None,
                 pipeline=None, peers=None, span=None):
        self.block_size = cfg["block_size"]
        super().__init__(owner, index, pool if pool is not None else BlockPool(
            num_blocks, self.block_size, cfg["enable_prefix_caching"]))
        self.pricer = pricer
        self.pipeline = pipeline
        self.peers = peers
        self.span = span
        self._span_pricing: dict[int, tuple] = {}   # (the span's, by batch size)
        self.caching = cfg["enable_prefix_caching"]
        self.chunked = cfg["enable_chunked_prefill"]
        #: vLLM V0 without chunked prefill: new prompts run in steps of their own, before decodes
        self.prefill_first = cfg.get("engine_version") == "v0" and not self.chunked
        #: blocks V0's block manager keeps free when admitting a prompt (``watermark`` 0.01)
        self.watermark = int(V0_WATERMARK * num_blocks) if self.prefill_first else 0
        self.max_seqs = cfg["max_num_seqs"]
        self.max_tokens = cfg["max_num_batched_tokens"]
        self.overhead = cfg["step_overhead_s"] + cfg["scheduler_iteration_delay_s"]
        self.overhead_per_req = cfg["step_overhead_per_request_s"]
        #: vLLM's async scheduling: the next step is formed while the GPU runs this one, so its
        #: CPU work is hidden and it sees only the requests that were there when this one began
        self.async_sched = bool(cfg.get("async_scheduling"))
        #: requests that reached the engine after this time wait for the step after next
        self._cutoff = math.inf
        #: a span of decode steps assumes no other batch shares the GPUs and no admission lag
        self.fast_forward = cfg["fast_forward"] and pipeline is None and not self.async_sched
        #: vLLM 0.6 multi-step scheduling (a no-op at the default of one step)
        self.gate = MultiStepGate(cfg["num_scheduler_steps"])
        #: whether rounds of several steps are on (else the gate never limits a span)
        self.multi_step = self.gate.num_steps > 1
        #: vLLM V0's asynchronous output processing: a step's outputs reach the client when the
        #: next step ends (they are processed while it runs); first tokens and finishes held here
        self.output_lag = bool(cfg.get("async_output_processing"))
        self._lag_first: list = []
        self._lag_done: list = []
        self._arrival = None         # while a shared-GPU span runs: fires on an arrival
        self._span_bounds = None     # while a fast-forward span runs: its steps' end times
        self._span_cut = False       # ... and whether a request arrived since it began
        self._last_in = 0.0          # when the latest request reached this engine
        self._gap_in = 0.0           # mean time between requests reaching it (moving average)
        self._woken_uncut = False    # whether the latest span woke before anything cut it
        self._lone = cfg.get("num_replicas", 1) == 1    # no other replica behind a router
        self._no = 0                 # admissions so far (the running order)
        # one-by-one mode: every running request in order (None in group mode)
        self._list: list[Seq] | None = None
        # group mode: running requests outside the decode group, in running order
        self._special: list[Seq] = []
        # the decode group
        self._group: dict[int, Seq] = {}
        self.G = 0                   # group steps scheduled so far
        self._g_end = 0.0            # end of the latest step the group decoded in
        self._nD = 0                 # members
        self._nW = 0                 # warm members
        self._S = 0                  # Σ (computed − g) over members: their context is S + nD·G
        self._cnt = [0] * self.block_size   # members by phase (g − computed) mod block_size
        self._fin: dict[int, list[Seq]] = {}   # group step after which they finish → members
        self._fin_keys: list[int] = []         # heap of _fin's keys (some popped already)
        self._dmax = -1              # highest running place that joined the group
        self._fresh: list[Seq] = []  # members whose last token is not the previous step's end
        self._fresh_mixed = False    # ... and not all after the others in running order

    # -- interface with the framework --------------------------------------------------

    @property
    def running(self) -> list[Seq]:
        """The running requests in order (a fresh list in group mode)."""
        if self._list is not None:
            return self._list
        if not self._group:
            return list(self._special)
        return sorted([*self._group.values(), *self._special], key=_by_no)

    def running_seqs(self) -> list[Seq]:
        return self.running

    def _num_running(self) -> int:
        if self._list is not None:
            return len(self._list)
        return self._nD + len(self._special)

    @property
    def outstanding(self) -> int:
        """Requests queued or running here (:meth:`_num_running`, inlined: the router and the
        PP rows of every step ask)."""
        lst = self._list
        if lst is not None:
            return len(lst) + len(self.waiting)
        return self._nD + len(self._special) + len(self.waiting)

    def new_seq(self, req) -> Seq:
        return Seq(req, req.arrival_s >= self.warm_up)

    def wake(self) -> None:
        """Wake the loop if it idles, or cut a fast-forward span at the step in progress (a
        request reached the engine: its time counts towards the mean gap between requests)."""
        now = self.env._now if self.plain_clock else self.env.now
        self._gap_in += (now - self._last_in - self._gap_in) * GAP_WEIGHT
        self._last_in = now
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._span_bounds is not None:
            self._cut_span()
        elif self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()

    def pending(self):
        """Every request still here (for the end-of-run ``unfinished`` rows)."""
        return [s.req for s in self.running] + [s.req for s in self.waiting] + self._lag_done

    # -- pricing ------------------------------------------------------------------------

    def _price(self, chunks, decodes: int, ctx: int) -> float:
        rows = len(chunks) + decodes
        return (self.pricer.step_time(chunks, decodes, ctx) + self.overhead
                + self.overhead_per_req * rows)

    # -- finishing a step ---------------------------------------------------------------

    def _commit(self, step: Step, start: float, end: float) -> None:
        """Apply one step's outputs at time *end*."""
        if self._lag_first or self._lag_done:
            self._release(end)
        if self._list is None:
            self._commit_group(step, start, end)
            return
        finished, gaps, _ = self._emit(step.entries, end)
        if gaps:
            self.metrics.itl.add(gaps)
        self._record(step, start, end)
        if finished:
            done = set(map(id, finished))
            self._list = [s for s in self._list if id(s) not in done]
            self._finish(finished, end)
        self._regroup()

    def _emit(self, entries: list[tuple[Seq, int, int]], end: float) -> tuple[list, list, bool]:
        """Each entry that completed its prompt emits a token at *end*: returns the requests
        that finished, the inter-token gaps of warm requests, and whether any goes on decoding."""
        finished = []
        gaps = []
        continuing = False
        fe_after = self.fe_after
        for seq, _n, _before in entries:
            if seq.computed < seq.num_tokens:
                continue                                    # a prefill chunk, not the last one
            seq.out += 1
            seq.num_tokens += 1
            if seq.out == 1:
                if self.output_lag:
                    self._lag_first.append(seq.req)
                else:
                    seq.req.first_token_s = end + fe_after
            elif seq.warm:
                gaps.append(end - seq.last_token)
            seq.last_token = end
            if seq.out >= seq.target:
                finished.append(seq)
            else:
                continuing = True
        return finished, gaps, continuing

    def _record(self, step: Step, start: float, end: float) -> None:
        flops, nbytes = self.pricer.work(step.chunks, step.decodes, step.decode_ctx)
        peers = self.peers
        if peers is None:
            used, running, waiting, busy = self.pool.num_used, self._num_running(), len(self.waiting), None
        else:
            # the whole replica under PP: every engine's requests and KV blocks (V0 splits the blocks)
            used = peers.kv_blocks_used()
            # (the replica's queues: only the steps table's rows show them)
            running, waiting = peers.queue_lengths() if self.metrics.steps is not None else NO_ROW_QUEUES
            pipeline = self.pipeline
            assert pipeline is not None                 # (peers: a pipeline-parallel replica's)
            busy = pipeline.busy(start, end)
        self.metrics.step(self.index, start, end - start, 1, step.tokens, len(step.chunks),
                          step.decodes, running, waiting, used, flops, nbytes, used * (end - start), busy)

    def _finish(self, finished: list[Seq], end: float) -> None:
        """Free and report requests already taken out of the running ones."""
        for seq in finished:
            if seq.req.output_id >= 0 and self.caching:
                self._cache_output(seq)              # a later turn carries this answer
            self.free_blocks(seq)
            if self.output_lag:
                self._lag_done.append(seq.req)
            else:
                self.report(seq.req, end)

    def finishes_unseen(self, requests) -> bool:
        """Whether *requests*, finishing in the step in flight, finish unseen: no listener of
        the framework acts on them at their time
        (:meth:`~labsim_llm.engine.serving_engine.ServingEngine.finish_unseen`; a closed loop
        or a conversation's next turn does), and V0's output lag would not hold them."""
        unseen = getattr(self.owner, "finish_unseen", None)
        return unseen is not None and not self.output_lag and all(map(unseen, requests))

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> Generator[Any, Any, None]:
        """The step loop (the shell's, with async scheduling, PP, V0's output lag and fast-forward)."""
        env = self.env
        gate = self.gate
        multi = self.multi_step           # else gate.advance is a no-op
        step_time = self.pricer.step_time
        overhead, per_req = self.overhead, self.overhead_per_req
        pipeline = self.pipeline
        async_sched = self.async_sched
        prev_start = math.inf       # start of the step that just ended (async scheduling's cut-off)
        # a step that ends before anything else happens, and whose landing nobody outside the
        # engine sees, is landed at once, ahead of the clock (no event of its own)
        ahead = self.fast_forward and self.gpus.exclusive
        horizon = math.nextafter(self.time_limit, math.inf)     # (steps ending after the run: not landed)
        peek = env.peek
        # SimPy 4's own queue and clock (timers.plain_simpy): read directly, as its ``peek``
        # and ``now`` read them, a call fewer each (asked at every step)
        plain = plain_simpy(env)
        queue: list = env._queue if plain else []
        while True:
            if self._lag_first or self._lag_done:
                if not self._num_running() and not self.waiting:
                    self._release(self.clock)   # no next step: processed as the engine idles
                    continue
            if not self._num_running() and not self.waiting:
                if self.clock > env.now:
                    # the last step was landed ahead: its end is the time the engine idles from
                    # (and, were it the run's last, the time the run drains at)
                    yield env.timeout(self.clock - env.now)
                    continue
                yield from self.idle()
                prev_start = math.inf   # nothing in flight: the next step is formed now
                continue
            if async_sched:
                # vLLM formed this step when the previous one began (its batch queue holds two)
                self._cutoff = prev_start
            step = self.schedule()
            if async_sched and not step.entries and not step.group and prev_start < math.inf:
                # nothing could be formed then, so vLLM forms it now, with whoever is waiting
                self._cutoff = prev_start = math.inf
                step = self.schedule()
            chunks = step.chunks
            if not step.entries and not step.group:
                if self.peers is None:
                    raise RuntimeError("vLLM replica formed an empty step with work pending")
                yield self.peers.changed()     # the other engines of the pipeline hold the blocks
                self.clock = max(self.clock, env.now)
                continue
            if multi:
                gate.advance(bool(chunks))
            start = prev_start = self.clock
            decodes = step.decodes
            if (self.fast_forward and step.group and not step.entries and not self._special
                    and self._list is None and not self._lag_first and not self._lag_done):
                # (fast_forward: neither async scheduling nor PP, so a step lasts _price)
                span = self._span(step)
                if span is not None:
                    lease = self.gpu_span(decodes, step.decode_ctx, span[0])   # a shared GPU's
                    if lease is not None:
                        dt = self._price(chunks, decodes, step.decode_ctx)
                        yield from self._run_shared_span(step, span, start, dt, lease)
                        continue
                    if self.gpu_is_alone():
                        yield from self._run_span(step, span, start)    # prices its first step too
                        continue
            gpu = step_time(chunks, decodes, step.decode_ctx)
            if async_sched or pipeline is not None:
                cpu = overhead + per_req * (len(chunks) + decodes)
                dt = max(gpu, cpu)      # async: the CPU work runs while the GPU does (PP: timed below)
            else:
                dt = gpu + overhead + per_req * (len(chunks) + decodes)     # _price, inlined
            if pipeline is not None:
                self.clock = pipeline.run(start, cpu, gpu)
                if self.span is not None and self.gpus.exclusive:
                    # the span lands it, and dispatches this engine's next batches, until a
                    # turn of this loop does not dispatch one (labsim_vllm.pipeline_span):
                    # then it wakes the loop, with the event to wait on if the others hold
                    # the blocks
                    back = yield from self.span.ride(self, step, start)
                    if back is not False:
                        yield back
                        self.clock = max(self.clock, env.now)
                    continue
            else:
                self.clock = end = start + dt
                if (ahead and end < horizon
                        and end < ((queue[0][0] if queue else INF) if plain else peek())
                        and self.gpu_is_alone()
                        and not self._lag_first and not self._lag_done):
                    # nothing can happen before it ends (the next event comes later); if landing
                    # it reports nothing, or only finishes nobody acts on at their time, its
                    # timeout would change nothing but the time
                    done = self.finishing(step)
                    if not done or self.finishes_unseen(done):
                        self._commit(step, start, end)
                        if done:
                            self.owner.last_left_s = end    # (one event each: env.now then)
                        continue
            end = yield self.gpu_work(max(0.0, self.clock - (env._now if plain else env.now)), step)
            if end is not None:
                self.clock = end
            self._commit(step, start, self.clock)
            if self.peers is not None:
                self.peers.batch_ended()


__all__ = ["Replica", "Seq", "Step", "MAX_SPAN"]

"""One TensorRT-LLM executor replica: capacity scheduler, micro-batch scheduler, KV cache, loop.

It follows the PyTorch backend's ``PyExecutor`` (TensorRT-LLM 1.0–1.2) as
docs/engine_behaviour.md (TensorRT-LLM §1–§2) describes it:

* **Active requests.** At most ``max_batch_size`` requests are active; more
  wait in the executor queue. New ones join the tail of the active list,
  whose order both schedulers walk.
* **Capacity scheduler** (``capacityScheduler.cpp``).
  ``GUARANTEED_NO_EVICT`` keeps every started request and reserves the
  blocks it still needs *to run to completion* (``prompt + max_tokens``, plus
  one token with the overlap scheduler); a request not yet started is
  admitted, in order, only if its whole-lifetime need fits in what is left
  (reuse savings not subtracted); the first that does not fit stops the scan.
  Nothing is ever evicted. ``MAX_UTILIZATION`` admits, in list order, every
  request whose *next step* fits (two tokens of look-ahead with the overlap
  scheduler); when one does not, it pauses the last started request of the
  rest of the list (its KV is freed, its generated tokens fold into its
  prompt, it will be prefilled again) and retries.
* **Micro-batch scheduler** (``microBatchScheduler.cpp``). In the order the
  capacity scheduler returned (started requests first), a generation costs
  one token and a context its whole remaining prompt; the first request that
  would exceed ``max_num_tokens`` stops the batch. With chunked context,
  contexts share what the generations leave, first come first served, each
  non-final chunk a multiple of ``tokens_per_block``.
* **KV cache.** Paged blocks of ``tokens_per_block`` tokens in labsim-llm's
  :class:`BlockPool` (LRU free queue, leaf blocks released first). With
  block reuse a new request matches the full blocks of its first
  ``prompt − 1`` tokens; a context's full prompt blocks become reusable when
  its step completes.
* **Overlap scheduler** (on by default). Iteration *k + 1* is scheduled while
  the GPU runs iteration *k*, from the state after iteration *k − 1*: a
  request that arrives during iteration *k* joins at *k + 2*; a request whose
  last token comes out of iteration *k* is not known to be done and runs one
  extra (discarded) decode step in *k + 1*; its blocks are freed after *k*.
  The CPU work is hidden: a step lasts ``max(GPU, CPU)``. Without overlap,
  the loop is schedule → run → update and a step lasts ``GPU + CPU``.
* **Pipeline parallelism** (``PyExecutor._executor_loop_pp``). With
  ``pipeline_parallel_size`` P the executor keeps up to P micro-batches in
  flight. Each pass schedules one from the requests not already in flight
  (same capacity and micro-batch schedulers, one KV cache). It then waits for
  the oldest micro-batch only if P are in flight, and applies its results.
  This loop has no overlap scheduler. A
  :class:`~labsim_llm.engine.pipeline.StagePipeline` times the micro-batches:
  the CPU work, then each stage's share of the GPU time.

* **Spans** (GPUs not shared). An iteration that ends before the next
  scheduled event of the simulation (and within ``max_simulation_time``) and
  finishes no request that anything acts on at its finishing time (a closed
  loop's next request, a conversation's next turn:
  :meth:`~labsim_llm.engine.serving_engine.ServingEngine.finish_unseen`) is
  applied without a SimPy event of its own: nothing can happen before it ends,
  so nobody can tell (the engine's ``last_left_s`` is set to the finishing's
  time, and a request starting in the next iteration reads the loop's time,
  :attr:`Replica.now`, not ``env.now``). When it and the next are iterations of
  the generation group alone, the iterations after it that qualify too are
  formed, priced and applied in one pass
  (:meth:`~labsim_trtllm.generation_group.GenerationGroup._run_span`). The
  process sleeps only until the end of the first iteration that does not
  qualify (an arrival during iteration *j* is seen when *j* ends, as with one
  event per iteration). Rows, gaps, blocks and every float are the ones one
  event per iteration gives, ``env.now`` included (:func:`catch_up`);
  ``Replica.spans = False`` steps one event per iteration. With pipeline
  parallelism a micro-batch whose results come back so is applied the same
  way, one at a time (no runs in one pass).

Every duration comes from :class:`labsim_trtllm.pricing.TrtStepPricer`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any, ClassVar

from labsim_llm.engine.kv_cache import BlockPool
from labsim_llm.engine.pipeline import StagePipeline
from labsim_llm.engine.timers import plain_simpy

from labsim_trtllm.generation_group import Cohort, GenerationGroup
from labsim_trtllm.seq import Seq, Step

INF = math.inf


class Replica(GenerationGroup):
    """A TensorRT-LLM executor (``tp × pp`` GPUs) running its loop as a SimPy process.

    The shell (:class:`~labsim_llm.engine.replica.ReplicaShell`) holds the waiting queue
    (TensorRT-LLM's executor queue), the idle wait, finishing and the block-reuse lookups.
    """

    #: apply iterations that end before the next event without an event of their own, runs
    #: of group-only ones in one pass (False: one event per iteration, as the equivalence
    #: tests compare)
    spans: ClassVar[bool] = True

    def __init__(self, owner: Any, index: int, pricer: Any, num_blocks: int, cfg: dict):
        super().__init__(owner, index, BlockPool(num_blocks, cfg["tokens_per_block"],
                                                 cfg["enable_block_reuse"]))
        self.pricer = pricer
        self.tpb = cfg["tokens_per_block"]
        self.reuse = cfg["enable_block_reuse"]
        self.guaranteed = cfg["capacity_scheduler_policy"] == "GUARANTEED_NO_EVICT"
        self.chunked = cfg["enable_chunked_prefill"]
        self.max_batch = cfg["max_batch_size"]
        self.max_tokens = cfg["max_num_tokens"]
        #: micro-batches in flight at once: the pipeline's stages (1 without pipeline parallelism)
        self.pp = int(cfg["pipeline_parallel_size"])
        self.pipeline = StagePipeline(self.pp) if self.pp > 1 else None
        # the PP loop has no overlap scheduler
        self.overlap = not cfg["disable_overlap_scheduler"] and self.pp == 1
        self.lookahead = 2 if self.overlap else 1
        self.extra_token = 1 if self.overlap else 0
        self.active: list[Seq] = []
        #: the simulated time the loop stands at: ``env.now``, or ahead of it after iterations
        #: applied without events of their own (what a request starting reads)
        self.now = 0.0
        self._init_group()

    # -- interface with the framework --------------------------------------------------

    def running_seqs(self) -> list[Seq]:
        return self._group_seqs() if self._gN else self.active

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + self._gN + len(self.active)

    def need_total(self, prompt: int, max_new: int) -> int:
        """Blocks a request holds when it runs to completion (GUARANTEED_NO_EVICT's reservation)."""
        return -(-(prompt + max_new + self.extra_token) // self.tpb)

    def run(self) -> Generator[Any, Any, None]:
        return self._loop() if self.pipeline is None else self._loop_pp()

    def new_seq(self, req: Any) -> Seq:
        # need_total, inlined
        return Seq(req, req.arrival_s >= self.warm_up,
                   -(-(req.prompt_tokens + req.max_output_tokens + self.extra_token) // self.tpb))

    # -- capacity scheduler -------------------------------------------------------------

    def _capacity(self) -> list[Seq]:
        if self.guaranteed:
            return self._guaranteed_no_evict()
        return self._max_utilization()

    def _guaranteed_no_evict(self) -> list[Seq]:
        active = self.active
        started = [s for s in active if s.computed > 0]
        if len(started) == len(active):            # the usual step: nothing waits to start
            return started[: self.max_batch]
        pending = [s for s in active if s.computed <= 0]
        available = self.pool.num_free - sum(r for r in [s.need_total - s.held for s in started]
                                             if r > 0)
        approved = started[: self.max_batch]
        for s in pending:
            if len(approved) >= self.max_batch or s.need_total > available:
                break
            approved.append(s)
            available -= s.need_total
        return approved

    def _one_step_need(self, s: Seq) -> int:
        tpb = self.tpb
        if s.computed < s.ctx_len:                        # context: its blocks plus the look-ahead
            tokens = s.ctx_len + self.lookahead - 1
            if s.computed == 0 and self.reuse:
                hits = self._hits(s)
                return max(0, -(-tokens // tpb) - len(hits) + self.pool.evictable(hits))
        else:
            tokens = s.computed + self.lookahead
        return max(0, -(-tokens // tpb) - s.held)

    def _max_utilization(self) -> list[Seq]:
        pool = self.pool
        available = pool.num_free
        todo = list(self.active)
        approved: list[Seq] = []
        i = 0
        while i < len(todo) and len(approved) < self.max_batch:
            s = todo[i]
            need = self._one_step_need(s)
            if need <= available:
                approved.append(s)
                available -= need
                i += 1
                continue
            j = len(todo) - 1
            while j >= i and todo[j].computed == 0:
                j -= 1
            if j < i:
                break
            before = pool.num_free
            self._pause(todo[j])
            available += pool.num_free - before
            del todo[j:]
        return approved

    def _pause(self, s: Seq) -> None:
        """Free a started request's KV and send it back to context (recompute, beam width 1)."""
        self.free_blocks(s)
        s.n_reg = 0
        s.computed = 0
        s.ctx_len = s.req.prompt_tokens + s.planned
        s.epoch += 1
        s.req.preemptions += 1
        self.metrics.preemptions += 1

    # -- micro-batch scheduler ----------------------------------------------------------

    def _hits(self, s: Seq) -> list:
        if not self.reuse:
            return []
        return self.cache_hits(s, s.ctx_len)

    def _start_context(self, s: Seq, hits: list) -> None:
        if hits:
            self.pool.touch(hits)
        s.hashed = list(hits)
        if self.reuse and not hits:
            # its prompt blocks' registration put off until a lookup needs them (the same
            # cache as registering each as it fills, without the map work per request)
            s.dref = self.pool.defer(s.keys, s.hashed)
        s.held = s.n_reg = len(hits)
        s.computed = len(hits) * self.tpb
        if not s.admitted:
            s.admitted = True
            s.req.cached_prompt_tokens = s.computed
            s.req.first_scheduled_s = self.now

    def _unstart(self, s: Seq) -> None:
        self.free_blocks(s)
        s.n_reg = s.computed = 0

    def schedule(self) -> Step:
        """Form one iteration and allocate its KV blocks.

        A generation request's token is counted (``computed``, ``planned``, ``held``) as the
        scan meets it; the blocks it needs are taken from the pool after the scan, as they
        would be one request at a time (one ``allocate`` takes the same blocks as several)."""
        co: Cohort | None = None               # the generation group's cohort, when grouped
        base = 0                               # its members, counted apart
        if self.grouped:
            co = self._cohort()
            if not self.active and (not self.waiting or self._gN >= self.max_batch):
                return self._group_only_step(co)
            base = co.n
        if self.waiting:
            self._fill_active()
        approved = self._capacity_grouped() if co is not None else self._capacity()
        if co is not None:
            g = co.gidx
            co.gidx = g + 1
        budget = self.max_tokens - base
        gens: list[Seq] = []
        contexts: list[list[Any]] = []
        gen_blocks = 0                         # blocks the generation requests need
        decode_ctx = 0
        tpb = self.tpb
        fresh: set[int] = set()
        joined = False
        pp = self.pp > 1
        room = self.max_batch - base           # entries the iteration may still take
        for s in approved:
            if room <= 0:
                break
            if pp and s.inflight:
                continue                       # its previous micro-batch has not come back
            c = s.computed
            if c >= s.ctx_len:
                if s.planned > s.target:
                    continue
                if co is not None and self._joins(s, co, g):   # counted with the cohort below
                    joined = True
                    room -= 1
                    budget -= 1
                    continue
                if budget < 1:
                    break
                gens.append(s)
                room -= 1
                budget -= 1
                c += 1
                need = -(-c // tpb) - s.held
                if need > 0:
                    gen_blocks += need
                    s.held += need
                s.computed = c
                decode_ctx += c
                s.planned += 1
                continue
            rest = self._context_entry(s, budget, fresh)
            if rest < 0:
                break
            if not self.chunked:
                budget -= rest
            contexts.append([s, rest])
            room -= 1
        if joined:
            self.active = [s for s in self.active if s.gf < 0]
        if self.chunked:
            contexts = self._fit_chunks(contexts, budget, fresh)
        if co is None:
            return self._allocate(gens, contexts, decode_ctx, gen_blocks)
        return self._with_cohort(co, g, gens, contexts, gen_blocks, decode_ctx)

    def _fill_active(self) -> None:
        """Move waiting requests to the active list while it has room (``max_batch_size``,
        group members included)."""
        active, waiting = self.active, self.waiting
        room = self.max_batch - self._gN
        if not self.grouped:
            while waiting and len(active) < room:
                active.append(waiting.popleft())
            return
        while waiting and len(active) < room:
            s: Seq = waiting.popleft()     # (typed: its fields are set directly)
            s.order = self._n_order
            self._n_order += 1
            active.append(s)

    def _context_entry(self, s: Seq, budget: int, fresh: set[int]) -> int:
        """The tokens context request *s* asks of the iteration being formed (starting it, with
        its cache hits, if it has not started; *fresh* collects those), or −1 when it does not
        fit without chunking and stops the micro-batch scan."""
        if s.computed == 0:
            hits = self.cache_hits(s, s.ctx_len) if self.reuse else []      # _hits
            rest = s.ctx_len - len(hits) * self.tpb
            if not self.chunked and rest > budget:
                return -1
            self._start_context(s, hits)
            fresh.add(id(s))
        rest = s.ctx_len - s.computed
        if not self.chunked and rest > budget:
            return -1
        return rest

    def _fit_chunks(self, contexts: list[list[Any]], budget: int, fresh: set[int]) -> list[list[Any]]:
        """With chunked context, the context entries cut to the *budget* the generation requests
        left, first come first served, each non-final chunk a multiple of ``tokens_per_block``;
        a request started by this scan that gets nothing is un-started."""
        if not self.chunked or not contexts or sum(n for _, n in contexts) <= budget:
            return contexts
        cap = budget
        kept = []
        for s, rest in contexts:
            take = min(rest, cap)
            if take < rest:
                take -= take % self.tpb
            if take > 0:
                kept.append([s, take])
                cap -= take
            elif id(s) in fresh:
                self._unstart(s)
        return kept

    def _allocate(self, gens: list[Seq], contexts: list, decode_ctx: int, gen_blocks: int) -> Step:
        """Allocate the generation requests' *gen_blocks* KV blocks and the context entries',
        and count the contexts' tokens (the generation requests, already counted by
        :meth:`schedule`, and their Σ context *decode_ctx*). One allocation takes the blocks
        several, one after another, would."""
        if not contexts:
            if gen_blocks:
                self._take(gen_blocks)
            return Step(gens, [], [], decode_ctx, 0)
        tpb = self.tpb
        entries: list[tuple[Seq, int, int, bool, int]] = []
        chunks: list[tuple[int, int]] = []
        blocks = gen_blocks
        tokens = 0
        for entry in contexts:
            s: Seq = entry[0]               # (typed: its fields are read and set directly)
            n: int = entry[1]
            before = s.computed
            c = before + n
            need = -(-c // tpb) - s.held
            if need > 0:
                blocks += need
                s.held += need
            s.computed = c
            emits = c >= s.ctx_len
            if emits:
                s.planned += 1
            entries.append((s, n, before, emits, s.epoch))
            chunks.append((n, before))
            tokens += n
        if blocks:
            self._take(blocks)
        return Step(gens, entries, chunks, decode_ctx, tokens)

    def _take(self, n: int) -> None:
        try:
            self.pool.allocate(n)          # (which takes nothing when *n* is more than is free)
        except RuntimeError:
            raise RuntimeError(f"TensorRT-LLM replica: {n} KV blocks needed, {self.pool.num_free} "
                               "free — the capacity scheduler let through more than fits") from None

    # -- completing an iteration --------------------------------------------------------

    def _leaving(self, step: Step) -> list[Seq]:
        """The requests whose last token *step* delivers (as :meth:`_commit` will find them)."""
        leaving = [s for s in step.gens if not s.finished and s.out + 1 >= s.target]
        for s, _n, _before, emits, _epoch in step.contexts:
            if emits and not s.finished and s.out + 1 >= s.target:
                leaving.append(s)
        co = step.cohort
        if step.group and co is not None:
            done = co.fin.get(step.gidx)
            if done:
                leaving.extend(done)
        return leaving

    def _register(self, s: Seq) -> None:
        self.register_prompt(s, min(s.computed, s.ctx_len))

    def _store_output(self, s: Seq) -> None:
        """At release TensorRT-LLM stores the sequence's full blocks, prompt *and* generated
        tokens (all but the last token, whose KV was never computed), for reuse
        (``kvCacheManager.cpp``, ``storeBlocksForReuse``). A conversation's next turn, whose
        prompt carries this answer (``Request.output_id``), then finds them as its prefix."""
        req = s.req
        if s.dref is not None:                    # its prompt blocks, registered first
            self.pool.materialize(s.dref)
            s.dref = None
        keys = self.output_keys(s, req.output_id, s.out)
        full = min((req.prompt_tokens + s.out - 1) // self.tpb, len(keys), s.held)
        start = max(s.n_reg, len(s.keys or ()))   # prompt blocks were registered as they filled
        self.register_keys(s, keys[start:full])

    def _commit(self, step: Step) -> None:
        if self.grouped:
            return self._commit_grouped(step)
        end = step.end
        finished: list[Seq] = []
        gaps = [gap for _, gap in self._apply_gens(step, end, finished)]
        self._apply_contexts(step, end, finished, gaps.append)
        self._add_gaps(gaps)
        self._record_step(step)
        if finished:
            self._finish(finished, end)

    def _apply_gens(self, step: Step, end: float, finished: list[Seq]) -> list[tuple[Seq, float]]:
        """Apply the outputs of *step*'s generation requests walked one by one at *end*: add
        those whose last token it is to *finished*; their inter-token gaps as
        ``(seq, gap)``, in running order."""
        gaps: list[tuple[Seq, float]] = []
        fe_after = self.fe_after
        for s in step.gens:
            if s.finished:
                continue                                   # the overlap scheduler's extra step
            out = s.out = s.out + 1
            if out == 1:
                s.req.first_token_s = end + fe_after
            elif s.warm:
                gaps.append((s, end - s.last_token))
            s.last_token = end
            if out >= s.target:
                finished.append(s)
        return gaps

    def _add_gaps(self, gaps: list[float]) -> None:
        """Record inter-token *gaps* (in order): one count when they are all equal, the usual
        step, where every stream waited as long."""
        if gaps:
            if gaps.count(gaps[0]) == len(gaps):
                self.metrics.itl.add_uniform(gaps[0], len(gaps))
            else:
                self.metrics.itl.add(gaps)

    def _record_step(self, step: Step) -> None:
        """*step*'s row of the steps table (requests running and waiting as it completes)."""
        end = step.end
        if step.chunks:
            flops, nbytes = self.pricer.work(step.chunks, step.decodes, step.decode_ctx)
        else:
            flops, nbytes = self.pricer.decode_work(step.decodes, step.decode_ctx)
        used = self.pool.num_used
        active = self.active
        waiting = len(self.waiting) + [s.computed for s in active].count(0)
        busy = self.pipeline.busy(step.start, end) if self.pipeline is not None else None
        self.metrics.step(self.index, step.start, end - step.start, 1, step.tokens, len(step.chunks),
                          step.decodes, self._gN + len(active), waiting, used, flops, nbytes,
                          used * (end - step.start), busy)

    def _apply_contexts(self, step: Step, end: float, finished: list[Seq], gap: Any) -> None:
        """Apply *step*'s context entries at *end*: cache their computed prompt blocks, emit the
        token of each final chunk (its inter-token gap, if any, to *gap*), and add those whose
        last token it is to *finished*."""
        reuse = self.reuse
        fe_after = self.fe_after
        for s, _n, _before, emits, epoch in step.contexts:
            if s.finished:
                continue
            if reuse and epoch == s.epoch:
                self._register(s)
            if not emits:
                continue
            s.out += 1
            if s.out == 1:
                s.req.first_token_s = end + fe_after
            elif s.warm:
                gap(end - s.last_token)
            s.last_token = end
            if s.out >= s.target:
                finished.append(s)

    def _finish(self, finished: list[Seq], end: float, members: bool = False) -> None:
        """*finished* (in order) leave at *end*: out of the active list (unless they are all
        generation group *members*, which are not in it), their blocks stored and freed."""
        for s in finished:
            s.finished = True
        if not members:
            self.active = [s for s in self.active if not s.finished]
        for s in finished:
            if self.reuse and s.req.output_id >= 0:
                self._store_output(s)
            self.free_blocks(s)
            self.report(s.req, end)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> Generator[Any, Any, None]:
        env = self.env
        pricer = self.pricer
        decode_price = pricer.decode_price
        # SimPy 4's own queue and clock (timers.plain_simpy): read directly, as its ``now``
        # and ``peek`` read them, a call fewer each (asked several times per request)
        plain = plain_simpy(env)
        queue: list = env._queue if plain else []
        peek = env.peek
        spans = self.spans and self.gpus.exclusive
        limit = self.time_limit
        cur = None
        #: when stepping one iteration an event, the simulated time after the last iteration
        #: applied; ahead of ``env.now`` after iterations applied without an event of their own
        now = env.now
        while True:
            self.now = now
            if cur is None:
                if not self.active and not self.waiting and not self._gN:
                    if now != env.now:
                        # behind the iterations applied without events, and the idle wait
                        # reads the time: the last one's time first
                        yield from catch_up(env, now, now)
                        yield env.timeout(now - env.now)
                    yield from self.idle()
                    now = env.now
                    continue
                cur = self.schedule()
                if not cur.gens and not cur.contexts and not cur.group:      # cur.empty
                    raise RuntimeError("TensorRT-LLM replica formed an empty iteration with work "
                                       "pending and nothing in flight")
                cur.start = self.clock
            nxt = self.schedule() if self.overlap else None     # while the GPU runs `cur`
            if cur.chunks:
                cur.end = cur.start + pricer.step_time(cur.chunks, cur.decodes, cur.decode_ctx)
            else:
                cur.end = cur.start + decode_price(cur.decodes)(cur.decode_ctx)
            wait = cur.end - now
            if wait < 0.0:
                wait = 0.0
            co = cur.cohort
            group_only = co is not None and not cur.gens and not cur.contexts and not co.fresh
            landed = False                              # applied without an event of its own
            if spans:
                t = now + wait                          # env.now after this iteration's event
                horizon = (queue[0][0] if queue else INF) if plain else peek()
                if t < horizon <= limit:
                    # it ends before anything else happens: applied now, as its event would
                    # apply it at *t*, unless anyone waits on what it finishes
                    leaving = (co.fin.get(cur.gidx) if group_only and co is not None
                               else self._leaving(cur))
                    if not leaving or self._finish_unseen(leaving):
                        if (group_only and co is not None and co.n and not self.active
                                and not self.waiting
                                and (nxt is None or not (nxt.gens or nxt.contexts))):
                            # and the next one is the cohort's alone: a span (see "Spans" in
                            # the module docstring)
                            first, nxt, now, left = self._run_span(cur, nxt, t, horizon)
                            if left is None or first is None:
                                cur = first
                                continue                # the cohort emptied
                            cur, wait = first, left
                        else:
                            now = t
                            landed = True
            if not landed:
                if now == (env._now if plain else env.now):
                    end = yield self.gpu_work(wait, cur)
                else:                                   # after iterations applied without events
                    t = now + wait
                    at = env._now if plain else env.now
                    if at + (t - at) != t:              # (catch_up's test, before its call)
                        yield from catch_up(env, now, t)
                        at = env.now
                    end = yield self.gpu_work(t - at, cur)
                now = env._now if plain else env.now
                if end is not None:
                    cur.end = end
            self.clock = cur.end
            if group_only and co is not None:
                self._commit_group_only(cur, co, cur.end)         # the usual iteration
            else:
                self._commit(cur)
            if landed and leaving:
                self.owner.last_left_s = now            # the finishing's time (not env.now's)
            if nxt is not None and (nxt.gens or nxt.contexts or nxt.group):     # not nxt.empty
                nxt.start = cur.end
                cur = nxt
            else:
                cur = None

    def _loop_pp(self) -> Generator[Any, Any, None]:
        """The pipeline-parallel loop: up to ``pp`` micro-batches in flight. A micro-batch whose
        results come back before the next event and finish nothing anyone sees is applied
        without an event of its own, as in :meth:`_loop` ("Spans" in the module docstring)."""
        env, pricer = self.env, self.pricer
        timers = self.timers                   # (its peek: compiled, env.peek is not)
        spans = self.spans and self.gpus.exclusive
        limit = self.time_limit
        inflight: deque[Step] = deque()
        pp = self.pp
        cohorts = self._cohorts
        pipeline = self.pipeline
        assert pipeline is not None, "the pipeline-parallel loop runs a pipeline"
        run = pipeline.run
        decode_gpu = pricer.decode_gpu
        cpu, cpu_per_req = pricer.cpu, pricer.cpu_per_req    # (pricer.cpu_time, inlined)
        now = env.now                          # as in _loop: ahead of env.now after such ones
        while True:
            if len(inflight) < pp and (self.active or self.waiting or self._gN):
                ready = None                   # the cohort a group-only micro-batch runs
                if self.active or self.waiting:
                    formable = self._formable()
                else:
                    # the cohorts' members alone (the usual pass): _formable's walk, and the
                    # cohort schedule() forms one of when it is the only one ready (several:
                    # schedule() merges them)
                    formable = False
                    for co in cohorts:
                        if co.n and not co.inflight:
                            if formable:
                                ready = None
                                break
                            formable = True
                            ready = co
                if formable:
                    self.now = now
                    step = self.schedule() if ready is None else self._group_only_step(ready)
                    walked = step.gens or step.contexts
                    if walked or step.group:                   # not step.empty
                        clock = self.clock
                        start = step.start = clock if clock >= now else now
                        if step.chunks:
                            gpu = pricer.gpu_time(step.chunks, step.decodes, step.decode_ctx)
                            step.end = run(start, pricer.cpu_time(step.chunks, step.decodes), gpu)
                        else:
                            b = step.decodes
                            step.end = run(start, cpu + cpu_per_req * b, decode_gpu(b)(step.decode_ctx))
                        if walked:                             # (a group-only one: none walked)
                            for s in step.seqs():
                                s.inflight = True
                        if step.cohort is not None:
                            step.cohort.inflight = True
                        inflight.append(step)
                        continue
                if not inflight:
                    raise RuntimeError("TensorRT-LLM replica formed an empty iteration with work "
                                       "pending and nothing in flight")
            if inflight:
                step = inflight.popleft()
                wait = step.end - now
                if wait < 0.0:
                    wait = 0.0
                t = now + wait                 # env.now after its event
                if spans and t < timers.peek() <= limit:
                    runs = step.cohort
                    if runs is not None and not step.gens and not step.contexts:
                        leaving = runs.fin.get(step.gidx) if step.group else None   # _leaving
                    else:
                        leaving = self._leaving(step)
                    if not leaving or self._finish_unseen(leaving):
                        now = t
                        self._return(step)
                        if leaving:
                            self.owner.last_left_s = now   # the finishing's time
                        continue
                if now == env.now:
                    end = yield self.gpu_work(wait, step)
                else:
                    at = env.now
                    if at + (t - at) != t:              # (catch_up's test, before its call)
                        yield from catch_up(env, now, t)
                        at = env.now
                    end = yield self.gpu_work(t - at, step)
                now = env.now
                if end is not None:
                    step.end = end
                self._return(step)
                continue
            if now != env.now:                 # the idle wait reads the time
                yield from catch_up(env, now, now)
                yield env.timeout(now - env.now)
            yield from self.idle()
            now = env.now

    def _return(self, step: Step) -> None:
        """A micro-batch's results came back: apply them."""
        self.clock = step.end
        co = step.cohort
        if step.gens or step.contexts:
            for s in step.seqs():
                s.inflight = False
        elif co is not None and not co.fresh:
            # the usual micro-batch: the cohort's members alone (_commit, as _commit_grouped
            # dispatches it)
            co.inflight = False
            self._commit_group_only(step, co, step.end)
            return
        if co is not None:
            co.inflight = False
        self._commit(step)

    def _formable(self) -> bool:
        """Whether forming a micro-batch now can give one, or change anything: requests wait, a
        request not in flight is active, or a cohort not in flight has members. (Forming one
        from requests all in flight gives an empty one; with ``MAX_UTILIZATION`` it may pause
        one of them, so it is formed then.)"""
        if self.waiting or (self.active and not self.grouped):
            return True
        for s in self.active:
            if not s.inflight:
                return True
        for co in self._cohorts:
            if co.n and not co.inflight:
                return True
        return False


def catch_up(env: Any, last: float, target: float) -> Generator[Any, Any, None]:
    """Timeouts (``yield from``) after which ``env.now + (target − env.now) == target``: the
    process, behind the iterations it applied without events (the last at *last*), wakes
    near *last* first when one delay cannot land on *target* (a sum rounds to even), never
    past *target* (the delay to *last* shortened by an ulp at a time when its sum rounds
    up beyond it, e.g. *last* = *target*, before an idle wait)."""
    if env.now + (target - env.now) != target:
        delay = last - env.now
        while env.now + delay > target:
            delay = math.nextafter(delay, 0.0)
        yield env.timeout(delay)
        while env.now + (target - env.now) != target:   # (an iteration longer than the run so far)
            yield env.timeout((target - env.now) / 2)


__all__ = ["Replica", "Seq", "Step", "catch_up"]

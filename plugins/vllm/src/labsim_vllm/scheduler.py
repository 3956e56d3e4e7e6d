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

The loop prices each step through the cost model and advances the clock.
With ``fast_forward`` a step whose batch is only decodes and would repeat
unchanged — no arrival, no completion, no block it cannot get — is repeated
in one event for as many iterations as it stays unchanged; an arrival during
the run cuts it at the iteration in progress. The result is identical to one
event per iteration (tested).

Bookkeeping costs O(changes) per step, not O(running requests). Running
requests that decode (one new token each step, as most do) form the *decode
group*: they advance in lockstep, so the group is kept as aggregates — how
many, their total context, how many reach a KV-block boundary at each step
(a request crosses one every ``block_size`` steps, so a count per phase
suffices), and the step at which each finishes. A member's own counters are
brought up to date only when it leaves the group (finishes, or the scheduler
needs every request one by one: a step that must preempt, a token budget
smaller than the group). Requests still prefilling — a few at the tail of
the running order — are handled one by one, exactly as vLLM does. The
one-by-one path and the group path give identical results (tested).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from itertools import accumulate
from operator import attrgetter

from labsim_llm.engine.kv_cache import BlockPool, block_ids
from labsim_llm.engine.multistep import MultiStepGate

#: longest run of identical decode steps taken as one event (bounds the work per event)
MAX_SPAN = 2048
#: share of the KV blocks vLLM V0's block manager keeps free when it admits a prompt
#: (``CacheConfig``/``BlockSpaceManager`` ``watermark=0.01``, vLLM 0.6.0)
V0_WATERMARK = 0.01
#: content ids for the generated tokens of requests no later prompt carries (``output_id`` −1):
#: ``OWN_OUTPUT_IDS + request_id``, above every id a workload draws, so only the request itself
#: (back from a preemption) can meet them
OWN_OUTPUT_IDS = 1 << 63

_by_no = attrgetter("no")


class Seq:
    """The engine's state of one request.

    While the request is in the decode group (``g >= 0``) its ``computed``,
    ``out``, ``num_tokens`` and ``held`` are those it had when it joined at
    group step ``g``; each group step since adds one token to each.
    """

    __slots__ = ("req", "num_tokens", "computed", "out", "target", "keys", "hashed", "held",
                 "n_reg", "last_token", "warm", "admitted", "no", "g", "dref", "t_in")

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
        self.no = -1                              # place in the running order (admission count)
        self.g = -1                               # group step it joined the decode group at
        self.dref = None                          # its deferred cache registration, if any
        self.t_in = 0.0                           # when it reached the engine


class Step:
    """What one scheduler step runs.

    ``entries``: ``(seq, new_tokens, computed_before)`` of the requests scheduled one by
    one; ``group``: decode-group members decoding one token each besides them (their
    context, ``group_ctx``, counted in ``decode_ctx``).
    """

    __slots__ = ("entries", "preempted", "chunks", "decodes", "decode_ctx", "pure_decode",
                 "group", "tokens")

    def __init__(self, entries, preempted: bool, group: int = 0, group_ctx: int = 0):
        self.entries = entries
        self.preempted = preempted
        self.group = group
        chunks = []
        decodes = group
        ctx = group_ctx
        tokens = group
        for seq, n, before in entries:
            tokens += n
            if n == 1 and seq.out > 0 and before == seq.num_tokens - 1:
                decodes += 1
                ctx += before + 1
            else:
                chunks.append((n, before))
        self.chunks = chunks
        self.decodes = decodes
        self.decode_ctx = ctx
        self.tokens = tokens
        self.pure_decode = not chunks and not preempted


class Replica:
    """A vLLM engine replica (``tp × pp`` GPUs) running its step loop as a SimPy process.

    :param owner: the framework (its metrics, ``notify_finished`` and config).
    :param pricer: a :class:`labsim_llm.engine.StepPricer`.
    :param num_blocks: KV-cache blocks.
    :param pool: a KV cache shared with other engines (else one of *num_blocks* of its own).
    :param pipeline: the :class:`~labsim_llm.engine.pipeline.StagePipeline` that times this
        engine's batches when several are in flight (pipeline parallelism), else None.
    :param peers: the :class:`~labsim_llm.engine.pipeline.PipelinedReplica` this engine is
        one of, to wait on when the others hold the KV blocks.
    """

    #: keep decoding requests as a group (False: every step walks every request, for tests)
    BULK = True

    def __init__(self, owner, index: int, pricer, num_blocks: int, cfg: dict, *, pool=None,
                 pipeline=None, peers=None):
        self.owner = owner
        self.index = index
        self.env = owner.context.env
        self.pricer = pricer
        self.metrics = owner.metrics
        self.block_size = cfg["block_size"]
        self.pool = pool if pool is not None else BlockPool(num_blocks, self.block_size,
                                                            cfg["enable_prefix_caching"])
        self.pipeline = pipeline
        self.peers = peers
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
        #: the API server's delay of every streamed token (first and last alike)
        self.fe_after = owner.frontend.after_first_token_s
        #: vLLM V0's asynchronous output processing: a step's outputs reach the client when the
        #: next step ends (they are processed while it runs); first tokens and finishes held here
        self.output_lag = bool(cfg.get("async_output_processing"))
        self._lag_first: list = []
        self._lag_done: list = []
        self.warm_up = owner.metrics.warm_up
        self.waiting: deque[Seq] = deque()
        self.clock = 0.0
        self._wake = None
        self._arrival = None
        self.process = None
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

    def _num_running(self) -> int:
        if self._list is not None:
            return len(self._list)
        return self._nD + len(self._special)

    @property
    def outstanding(self) -> int:
        """Requests queued or running here."""
        return self._num_running() + len(self.waiting)

    def start(self) -> None:
        self.process = self.env.process(self._loop())

    def submit(self, req) -> None:
        """Queue an admitted request (the framework has checked its length)."""
        req.replica = self.index
        seq = Seq(req, req.arrival_s >= self.warm_up)
        seq.t_in = self.env.now
        self.waiting.append(seq)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()

    def pending(self):
        """Every request still here (for the end-of-run ``unfinished`` rows)."""
        return [s.req for s in self.running] + [s.req for s in self.waiting] + self._lag_done

    # -- the decode group ---------------------------------------------------------------

    def _enter(self, seq: Seq, g: int) -> None:
        """Make *seq* a group member whose counters are those at group step *g*."""
        seq.g = g
        self._group[seq.no] = seq
        self._nD += 1
        if seq.warm:
            self._nW += 1
        c = seq.computed
        self._S += c - g
        self._cnt[(g - c) % self.block_size] += 1
        key = g + seq.target - seq.out
        fin = self._fin.get(key)
        if fin is None:
            self._fin[key] = [seq]
            heapq.heappush(self._fin_keys, key)
        else:
            fin.append(seq)
        if seq.no > self._dmax:
            self._dmax = seq.no

    def _materialise(self, seq: Seq) -> None:
        """Bring a member's counters up to date (after a step's outputs) and mark it out."""
        d = self.G - seq.g
        if d:
            seq.computed += d
            seq.out += d
            seq.num_tokens += d
            seq.last_token = self._g_end
        seq.held = -(-seq.computed // self.block_size)
        seq.g = -1

    def _leave(self, seq: Seq) -> None:
        """Take a finished member out of the group (its counters brought up to date)."""
        self._materialise(seq)
        del self._group[seq.no]
        self._nD -= 1
        if seq.warm:
            self._nW -= 1
        c = seq.computed
        self._S -= c - self.G
        self._cnt[(self.G - c) % self.block_size] -= 1

    def _ungroup(self) -> None:
        """Switch to one-by-one mode: every running request in ``_list``, counters exact."""
        members = list(self._group.values())
        for seq in members:
            self._materialise(seq)
        members.extend(self._special)
        members.sort(key=_by_no)
        self._list = members
        self._special = []
        self._group = {}
        self._nD = self._nW = self._S = 0
        self._cnt = [0] * self.block_size
        self._fin = {}
        self._fin_keys = []
        self._dmax = -1
        self._fresh = []
        self._fresh_mixed = False

    def _decoding(self, seq: Seq) -> bool:
        """Whether *seq* (counters exact, after a step's outputs) decodes one token next step."""
        return (seq.out > 0 and seq.computed == seq.num_tokens - 1 and seq.out < seq.target
                and (not self.caching or seq.n_reg >= len(seq.keys or ())))

    def _regroup(self) -> None:
        """Back to group mode after a one-by-one step (at its end, time ``self.clock``)."""
        lst = self._list
        self._list = None
        end = self.clock
        fresh = self._fresh
        special = self._special
        for seq in lst:
            if self._decoding(seq):
                self._enter(seq, self.G)
                if seq.last_token != end:           # it did not run in that step
                    fresh.append(seq)
                elif fresh:
                    self._fresh_mixed = True
            else:
                special.append(seq)
        self._g_end = end

    def _absorb(self, entries, g: int) -> None:
        """Make the (decode) *entries* of the step being formed group members from step *g*."""
        for seq, _n, before in entries:
            seq.computed = before
            self._enter(seq, g)
            self._fresh.append(seq)

    def _group_gaps(self, end: float, prev: float, tail=None) -> None:
        """Inter-token gaps of a step the group decoded in, ending at *end*, in running order."""
        itl = self.metrics.itl
        fresh = self._fresh
        if not fresh:
            itl.add_uniform(end - prev, self._nW, tail)
            return
        self._fresh = []
        if self._fresh_mixed:
            self._fresh_mixed = False
            ids = set(map(id, fresh))
            gaps = [end - (s.last_token if id(s) in ids else prev)
                    for s in sorted(self._group.values(), key=_by_no) if s.warm]
            itl.add(gaps + list(tail or ()))
            return
        own = [end - s.last_token for s in fresh if s.warm]
        if tail:
            own.extend(tail)
        itl.add_uniform(end - prev, self._nW - sum(1 for s in fresh if s.warm), own)

    # -- scheduling (vLLM v1 Scheduler.schedule) ----------------------------------------

    def _preempt(self, seq: Seq) -> None:
        if self.caching and seq.out > 0:
            self._cache_output(seq)
        if seq.dref is not None:
            self.pool.materialize(seq.dref)
            seq.dref = None
        self.pool.free(seq.hashed, seq.held - len(seq.hashed))
        seq.hashed = []
        seq.held = 0
        seq.n_reg = 0
        seq.computed = 0
        seq.req.preemptions += 1
        self.metrics.preemptions += 1
        self.waiting.appendleft(seq)

    def _cache_output(self, seq: Seq) -> None:
        """Cache the full blocks of generated tokens *seq* has computed, as vLLM hashes every
        full block of a request, prompt or output: back from a preemption it finds them again,
        and a conversation's next turn (whose prompt carries this answer) finds them as its
        prefix. Done when it is preempted or finishes — until then no other request can hit
        them — and before its blocks are freed, so the eviction order is vLLM's."""
        full = seq.computed // self.block_size
        if full <= seq.n_reg:
            return
        req = seq.req
        oid = req.output_id if req.output_id >= 0 else OWN_OUTPUT_IDS + req.request_id
        keys = block_ids((*req.segments, (oid, seq.out)), self.block_size)
        d = seq.dref
        if d is not None and d.state == 0:            # still deferred: the record holds seq.keys
            seq.keys.extend(keys[len(seq.keys):])
            d.n = full
        else:
            seq.hashed.extend(self.pool.register_many(keys[seq.n_reg:full]))
            seq.keys = keys
        seq.n_reg = full

    def _register(self, seq: Seq, upto: int) -> None:
        """Cache the full prompt blocks covered by the first *upto* tokens."""
        keys = seq.keys
        full = min(upto // self.block_size, len(keys))
        if seq.n_reg < full:
            d = seq.dref
            if d is not None and d.state == 0:        # still deferred: just count them
                d.n = full
                seq.n_reg = full
                return
            seq.hashed.extend(self.pool.register_many(keys[seq.n_reg:full]))
            seq.n_reg = full

    def schedule(self) -> Step:
        """Form one step, allocating its KV blocks (and preempting when they run out)."""
        if self.prefill_first and self.waiting:
            step = self._schedule_prompts()
            if step is not None:
                return step
        if self._list is None:
            if self.BULK:
                step = self._schedule_group()
                if step is not None:
                    return step
            self._ungroup()
        step = self._schedule_list()
        if step.pure_decode and len(step.entries) == len(self._list):
            # every running request decodes: go on as a group (a run of such steps is one event)
            self._list = None
            self._absorb(step.entries, self.G)
            self.G += 1
            step = Step([], False, len(step.entries), step.decode_ctx)
        return step

    def _schedule_group(self) -> Step | None:
        """The step in group mode, in O(requests outside the group); None if it needs one by one."""
        budget = self.max_tokens
        nD = self._nD
        special = self._special
        if nD > budget or (special and special[0].no < self._dmax):
            return None
        pool = self.pool
        bs = self.block_size
        G = self.G
        need_total = self._cnt[G % bs]             # members that start a new block
        free = pool.num_free - need_total
        if free < 0:
            return None
        budget -= nD
        plan = []
        for seq in special:
            if budget <= 0:
                break
            c = seq.computed
            n = seq.num_tokens - c
            if n > budget:
                n = budget
            need = -(-(c + n) // bs) - seq.held
            if need > free:
                return None                         # it would preempt
            if need > 0:
                free -= need
                need_total += need
            plan.append((seq, n, need))
            budget -= n
        # no preemption: commit the allocations (one call takes the same blocks as several)
        if need_total:
            pool.allocate(need_total)
        entries = []
        for seq, n, need in plan:
            if need > 0:
                seq.held += need
            entries.append((seq, n, seq.computed))
        ctx = self._S + nD * (G + 1)
        self.G = G + 1
        self._admit(budget, entries, special, nD)
        step = Step(entries, False, nD, ctx)
        self._computed(entries)
        if entries and step.pure_decode and len(entries) == len(special):
            self._absorb(entries, G)
            self._special = []
            step = Step([], False, step.decodes, step.decode_ctx)
        return step

    def _schedule_list(self) -> Step:
        """The step with every running request one by one (vLLM's loop as written)."""
        bs = self.block_size
        pool = self.pool
        budget = self.max_tokens
        entries = []
        running = self._list
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
            self._admit(budget, entries, running, 0)
        step = Step(entries, preempted)
        self._computed(entries)
        return step

    def _admit(self, budget: int, entries: list, running: list, others: int) -> None:
        """Admit waiting requests FCFS onto the end of *running* (*others*: running elsewhere)."""
        waiting = self.waiting
        if not waiting or budget <= 0 or self.prefill_first:
            return
        gate = self.gate
        if gate.num_steps > 1 and not gate.may_admit(others + len(running)):
            return                  # (with one step per round the gate is always open)
        pool = self.pool
        bs = self.block_size
        skipped = []
        cutoff = self._cutoff
        while waiting and budget > 0 and others + len(running) < self.max_seqs:
            seq = waiting[0]
            if seq.t_in > cutoff:
                break               # async scheduling: this step was formed before it arrived
            hits = self._hits(seq) if self.caching else []
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
            self._start(seq, hits, need, n, running, entries)
            budget -= n
        for seq in reversed(skipped):
            waiting.appendleft(seq)

    def _hits(self, seq: Seq) -> list:
        """The leading block keys of waiting *seq* found in the prefix cache (at most all but
        the last token's block: vLLM recomputes the last token to get its logits)."""
        if seq.keys is None:
            seq.keys = block_ids(seq.req.segments, self.block_size)
        return seq.keys[:self.pool.match(seq.keys, (seq.num_tokens - 1) // self.block_size)]

    def _start(self, seq: Seq, hits: list, need: int, n: int, running: list, entries: list) -> None:
        """Admit *seq* (taken off the waiting queue): its cache hits, *need* new blocks, and its
        first *n* tokens as an entry of the step being formed."""
        pool = self.pool
        if hits:
            pool.touch(hits)
        pool.allocate(need)
        seq.hashed = list(hits)
        if self.caching and not hits:
            seq.dref = pool.defer(seq.keys, seq.hashed)
        hit_tokens = len(hits) * self.block_size
        seq.n_reg = len(hits)
        seq.held = len(hits) + need
        seq.computed = hit_tokens
        if not seq.admitted:
            seq.admitted = True
            seq.req.cached_prompt_tokens = hit_tokens
            seq.req.first_scheduled_s = self.clock
        seq.no = self._no
        self._no += 1
        running.append(seq)
        entries.append((seq, n, hit_tokens))

    def _schedule_prompts(self) -> Step | None:
        """A step of new whole prompts alone, or None when none can start (vLLM V0 without
        chunked prefill, ``Scheduler._schedule_default`` and ``_schedule_prefills``).

        Waiting requests are taken first come, first served while the token budget, the
        ``max_num_seqs`` limit (running ones included) and the free blocks less the
        watermark allow; the first that does not fit stops the scan. The decodes wait for
        the next step. Under multi-step scheduling prompts start only between rounds.
        """
        running = self._list if self._list is not None else self._special
        others = 0 if self._list is not None else self._nD
        gate = self.gate
        if gate.num_steps > 1 and not gate.may_admit(others + len(running)):
            return None
        pool = self.pool
        bs = self.block_size
        budget = self.max_tokens
        waiting = self.waiting
        entries = []
        while waiting and others + len(running) < self.max_seqs:
            seq = waiting[0]
            hits = self._hits(seq) if self.caching else []
            n = seq.num_tokens - len(hits) * bs
            if n > budget:
                break
            need = -(-seq.num_tokens // bs) - len(hits)
            if need + (pool.evictable(hits) if hits else 0) > pool.num_free - self.watermark:
                break
            waiting.popleft()
            self._start(seq, hits, need, n, running, entries)
            budget -= n
        if not entries:
            return None
        step = Step(entries, False)
        self._computed(entries)
        return step

    def _computed(self, entries) -> None:
        """Count the step's tokens as computed and cache the prompt blocks they fill."""
        caching = self.caching
        for seq, n, before in entries:
            seq.computed = before + n
            if caching and seq.n_reg < len(seq.keys or ()):
                self._register(seq, seq.computed)

    # -- pricing ------------------------------------------------------------------------

    def _price(self, chunks, decodes: int, ctx: int) -> float:
        rows = len(chunks) + decodes
        return (self.pricer.step_time(chunks, decodes, ctx) + self.overhead
                + self.overhead_per_req * rows)

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

    def _emit(self, entries, end: float) -> tuple[list, list, bool]:
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

    def _commit_group(self, step: Step, start: float, end: float) -> None:
        finished, gaps, joined = self._emit(step.entries, end)
        if step.group:
            # from the group's last decode: the previous step's end, unless prompts ran alone
            self._group_gaps(end, self._g_end, gaps)
        elif gaps:
            self.metrics.itl.add(gaps)
        if step.group or not self._nD:
            self._g_end = end
        self._record(step, start, end)
        self._after_step(finished, joined, end)

    def _after_step(self, finished: list, joined: bool, end: float) -> None:
        """Members that finish leave the group, requests that start decoding join it."""
        G = self.G
        done = self._fin.pop(G, None)
        if done:
            done.sort(key=_by_no)
            for seq in done:
                self._leave(seq)
            finished = done + finished
        if finished or joined:
            keep = []
            for seq in self._special:
                if seq.out >= seq.target:
                    continue
                if self._decoding(seq):
                    self._enter(seq, G)
                    if seq.last_token != self._g_end:
                        self._fresh.append(seq)
                        if self._g_end == end:      # (not expected: it decoded without running)
                            self._fresh_mixed = True
                        # else prompts ran alone while the group waited: the newcomers come
                        # after every member in running order
                else:
                    keep.append(seq)
            self._special = keep
        if finished:
            self._finish(finished, end)

    def _record(self, step: Step, start: float, end: float) -> None:
        flops, nbytes = self.pricer.work(step.chunks, step.decodes, step.decode_ctx)
        if self.peers is None:
            used, running, waiting, busy = self.pool.num_used, self._num_running(), len(self.waiting), None
        else:
            # the whole replica under PP: every engine's requests and KV blocks (V0 splits the blocks)
            used, running, waiting = self.peers.kv_blocks_used(), *self.peers.queue_lengths()
            busy = self.pipeline.busy(start, end)
        self.metrics.step(self.index, start, end - start, 1, step.tokens, len(step.chunks),
                          step.decodes, running, waiting, used, flops, nbytes, used * (end - start), busy)

    def _finish(self, finished, end: float) -> None:
        """Free and report requests already taken out of the running ones."""
        for seq in finished:
            if seq.req.output_id >= 0 and self.caching:
                self._cache_output(seq)              # a later turn carries this answer
            d = seq.dref
            if d is not None:
                seq.dref = None
                if d.state == 0:
                    self.pool.free_deferred(d, seq.held - d.n)
                else:
                    self.pool.free(seq.hashed, seq.held - len(seq.hashed))
            else:
                self.pool.free(seq.hashed, seq.held - len(seq.hashed))
            seq.hashed = []
            seq.held = 0
            if self.output_lag:
                self._lag_done.append(seq.req)
            else:
                self._report(seq.req, end)

    def _report(self, req, end: float) -> None:
        """Tell the metrics and the client that *req* finished (its last token out at *end*)."""
        req.status = "finished"
        req.finish_s = end + self.fe_after
        self.metrics.request_done(req)
        self.owner.request_left(req)

    def _release(self, end: float) -> None:
        """Hand the client the first tokens and finishes held back since the previous step
        (``async_output_processing``): they arrive as the step ending at *end* ends."""
        first, done = self._lag_first, self._lag_done
        self._lag_first, self._lag_done = [], []
        for req in first:
            req.first_token_s = end + self.fe_after
        for req in done:
            self._report(req, end)

    # -- fast forward -------------------------------------------------------------------

    def _span(self, step: Step):
        """How many steps would repeat *step* (the whole group decoding) unchanged, with the
        blocks they need (cumulated from the second on) and the first one's decode context."""
        bs = self.block_size
        g1 = self.G - 1                                     # the group step *step* is
        heap, fin = self._fin_keys, self._fin
        while heap[0] not in fin:
            heapq.heappop(heap)
        k_max = min(heap[0] - g1, MAX_SPAN, self.gate.span_limit(bool(self.waiting)))
        if k_max <= 1:
            return None
        # blocks the steps after the first need: members cross a block boundary every bs steps,
        # so the first s of them need (s // bs) · nD + prefix[s % bs]
        cnt = self._cnt
        per = self._nD
        p = (g1 + 1) % bs
        prefix = [0, *accumulate(cnt[p:] + cnt[:p])]      # prefix[r] = Σ cnt[(g1 + i) % bs], i ≤ r
        free = self.pool.num_free
        k = k_max                                           # first s whose need exceeds free
        for r in range(1, bs + 1):
            slack = free - prefix[r]
            s = (slack // per + 1 if slack >= 0 else 0) * bs + r
            if s < k:
                k = s
        if k <= 1:
            return None
        return k, (prefix, per), step.decode_ctx

    def _need(self, blocks, s: int) -> int:
        """Blocks the steps 2..s+1 of a span need (*blocks* from :meth:`_span`)."""
        prefix, per = blocks
        q, r = divmod(s, len(prefix) - 1)
        return q * per + prefix[r]

    def _bounds(self, bounds: list, least: int, k: int, horizon: float, ctx0: int) -> None:
        """Extend *bounds* (end times of a span's steps) to at least *least* steps and past
        *horizon*, at most *k*."""
        b = self._nD
        t = bounds[-1]
        j = len(bounds)
        if j < k and (j < least or t < horizon):
            price = self._decode_price(b)
            while j < k and (j < least or t < horizon):
                t += price(ctx0 + b * j)
                bounds.append(t)
                j += 1

    def _commit_span(self, step: Step, span, j: int, start: float, bounds) -> None:
        """Apply the first *j* iterations of a fast-forward span."""
        k, blocks, ctx0 = span
        b = self._nD
        extra = self._need(blocks, j - 1)
        if extra:
            self.pool.allocate(extra)
        used0 = self.pool.num_used - extra
        itl = self.metrics.itl
        self._group_gaps(bounds[0], self._g_end)   # from the group's last decode (prompts may have run since)
        n_warm = self._nW
        end = bounds[j - 1]
        kv_seconds = 0.0
        prefix, per = blocks
        bs = len(prefix) - 1
        prev = start
        gaps = []
        for i in range(j):
            t = bounds[i]
            d = t - prev                    # the same subtraction one event per step makes
            prev = t
            gaps.append(d)
            q, r = divmod(i, bs)            # _need(blocks, i), inlined
            kv_seconds += (used0 + (q * per + prefix[r])) * d
        if n_warm and j > 1:
            itl.add_repeated_each(gaps[1:], n_warm)
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
                          self.pool.num_used, flops, nbytes, kv_seconds)
        self._after_step([], False, end)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self):
        env = self.env
        gate = self.gate
        multi = gate.num_steps > 1        # else gate.advance is a no-op
        step_time = self.pricer.step_time
        overhead, per_req = self.overhead, self.overhead_per_req
        pipeline = self.pipeline
        async_sched = self.async_sched
        prev_start = math.inf       # start of the step that just ended (async scheduling's cut-off)
        while True:
            if self._lag_first or self._lag_done:
                if not self._num_running() and not self.waiting:
                    self._release(self.clock)   # no next step: processed as the engine idles
                    continue
            if not self._num_running() and not self.waiting:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                self.clock = max(self.clock, env.now)
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
            gpu = step_time(chunks, decodes, step.decode_ctx)
            if async_sched or pipeline is not None:
                cpu = overhead + per_req * (len(chunks) + decodes)
                dt = max(gpu, cpu)      # async: the CPU work runs while the GPU does (PP: timed below)
            else:
                dt = gpu + overhead + per_req * (len(chunks) + decodes)     # _price, inlined
            if (self.fast_forward and step.group and not step.entries and not self._special
                    and self._list is None and not self._lag_first and not self._lag_done):
                span = self._span(step)
                if span is not None:
                    # the steps are priced as the span goes, up to the step in progress at the
                    # next scheduled event (only then can a request arrive and cut the span)
                    k = span[0]
                    bounds = [start + dt]
                    arrival = self._arrival = env.event()
                    # ``timeout | arrival`` without a Condition, event for event: the one
                    # processed first schedules *wake* (as the Condition would schedule
                    # itself), and the process resumes when *wake* is processed
                    box = [None]
                    arrival.callbacks.append(lambda _e: box[0].triggered or box[0].succeed())  # noqa: B023 (this span's box)
                    more = 1
                    while True:
                        self._bounds(bounds, len(bounds) + more, k, env.peek(), span[2])
                        more *= 2
                        wake = box[0] = env.event()
                        env.timeout(max(0.0, bounds[-1] - env.now)).callbacks.append(
                            lambda _e, w=wake: w.triggered or w.succeed())
                        yield wake
                        now = env.now
                        if arrival.triggered and (now < bounds[-1] or len(bounds) < k):
                            j = bisect.bisect_left(bounds, now) + 1
                            if bounds[j - 1] > now:
                                yield env.timeout(bounds[j - 1] - now)
                            break
                        if len(bounds) == k:
                            j = k
                            break
                    self._arrival = None
                    self.clock = bounds[j - 1]
                    self._commit_span(step, span, j, start, bounds)
                    if multi:
                        gate.advance(False, j - 1)
                    continue
            if pipeline is not None:
                self.clock = pipeline.run(start, cpu, gpu)
            else:
                self.clock = start + dt
            yield env.timeout(max(0.0, self.clock - env.now))
            self._commit(step, start, self.clock)
            if self.peers is not None:
                self.peers.batch_ended()


__all__ = ["Replica", "Seq", "Step", "MAX_SPAN"]

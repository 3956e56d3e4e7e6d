"""vLLM v1's scheduler (``vllm/v1/core/sched/scheduler.py``, 0.10/0.11; docs/engine_behaviour.md §1).

Each step first walks the running requests in order, giving each ``min(tokens
it lacks, budget left)`` tokens (chunked prefill falls out of that), allocating
KV blocks for them and, when blocks run out, preempting the *last* running
request by recompute (its blocks are freed, its computed tokens reset, it goes
back to the front of the waiting queue). Then, only if nothing was preempted,
waiting requests are admitted in FCFS order with their prefix-cache hit, until
the budget, ``max_num_seqs`` or the KV cache stops it (head-of-line: the first
that does not fit stops admission).

:class:`V1Scheduler` is a part of :class:`labsim_vllm.scheduler.Replica`.
"""

from __future__ import annotations

from labsim_vllm.seq import OWN_OUTPUT_IDS, Seq, Step
from labsim_vllm.v0 import V0Scheduler


class V1Scheduler(V0Scheduler):
    """Forming a step: the running requests, preemption, then admission (a part of the replica)."""

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
        running = self._list
        assert running is not None                  # (one-by-one mode)
        if step.pure_decode and len(step.entries) == len(running):
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
        if not special and not self.waiting:
            # the usual step: the group alone, nobody to admit (what the rest gives then)
            if need_total:
                pool.allocate(need_total)
            self.G = G + 1
            return Step([], False, nD, self._S + nD * (G + 1))
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
        entries: list = []
        running = self._list
        assert running is not None                  # (one-by-one mode)
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
        if self.multi_step and not gate.may_admit(others + len(running)):
            return                  # (with one step per round the gate is always open)
        pool = self.pool
        bs = self.block_size
        skipped: list[Seq] = []
        cutoff = self._cutoff
        while waiting and budget > 0 and others + len(running) < self.max_seqs:
            seq: Seq = waiting[0]          # (typed: its fields are read directly)
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
        return self.cache_hits(seq, seq.num_tokens)

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

    def _computed(self, entries: list[tuple[Seq, int, int]]) -> None:
        """Count the step's tokens as computed and cache the prompt blocks they fill."""
        caching = self.caching
        for seq, n, before in entries:
            seq.computed = before + n
            if caching and seq.n_reg < len(seq.keys or ()):
                self.register_prompt(seq, seq.computed)

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
        keys = self.output_keys(seq, oid, seq.out)
        d = seq.dref
        if d is not None and d.state == 0:            # still deferred: the record holds seq.keys
            own = seq.keys
            assert own is not None                  # (made when it was admitted)
            seq.keys = d.keys = [*own, *keys[len(own):]]
            d.n = full
        else:
            self.register_keys(seq, keys[seq.n_reg:full])
            seq.keys = keys
        seq.n_reg = full


__all__ = ["V1Scheduler"]

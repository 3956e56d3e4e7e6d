"""The generation group: requests that generate one token a step, kept as aggregates.

Under ``GUARANTEED_NO_EVICT`` without pipeline parallelism a started request,
once its context is done, is in every iteration until it finishes: the
capacity scheduler keeps every started request, the micro-batch scheduler
cannot run out of room (at most ``max_batch_size`` requests are active, and
``max_batch_size ≤ max_num_tokens`` is required for the group), and nothing is
paused. So those requests advance in lockstep and the executor keeps them as
aggregates instead of walking them each iteration:

* how many there are (and how many count in the statistics);
* the sum of their contexts, from which each iteration's decode context follows;
* how many cross a KV-block boundary at each iteration (a request needs a new
  block every ``tokens_per_block`` tokens, so a count per phase suffices);
* the iteration whose outputs complete each of them;
* the blocks they hold and the blocks their whole lifetime reserves (what the
  capacity scheduler subtracts before admitting a new request).

A member's own counters are brought up to date only when it leaves (it
finishes, or the run ends with it inside). Iteration ``g`` (``Step.gidx``)
runs every member that joined at or before ``g``; a member that joined at
iteration ``f`` with ``c0`` tokens computed and ``p0`` planned has computed
``c0 + g − f`` before iteration ``g`` and delivered ``p0 + g − f + 1`` tokens
after it, so it finishes at ``f + target − p0 − 1``. With the overlap
scheduler iteration ``g + 1`` is formed before ``g``'s outputs are applied, so
a member that finishes at ``g`` also runs (discarded) in ``g + 1``, as a
plain walk gives.

Requests that generate but cannot join (the overlap scheduler's extra step of
a request finished by its context, or a request whose outputs would outgrow
its reservation) are walked one by one, as the plain executor walks every
request. Outputs are identical to the plain executor's, bit for bit
(``plugins/trtllm/tests/test_trtllm_speed_equivalence.py``).

:class:`GenerationGroup` is a part of :class:`labsim_trtllm.executor.Replica`.
"""

from __future__ import annotations


class GenerationGroup:
    """Joining, leaving and stepping the generation group (a part of the executor replica)."""

    def _init_group(self, cfg: dict) -> None:
        #: whether generating requests are kept as a group (see the module docstring)
        self.grouped = (self.guaranteed and self.pp == 1 and self.max_batch <= self.max_tokens)
        self._members: dict[int, object] = {}    # order → Seq
        self._gN = 0                              # members
        self._gW = 0                              # members that count in the statistics
        self._gS = 0                              # Σ (c0 − f)
        self._gcnt = [0] * self.tpb               # members per (c0 − f) mod tokens_per_block
        self._gheld = 0                           # Σ blocks held
        self._gneed = 0                           # Σ blocks reserved to completion
        self._gfin: dict[int, list] = {}          # iteration → members its outputs complete
        self._gidx = 0                            # the next iteration's index
        self._ahead = None                        # the iteration formed last (overlap: not yet applied)
        self._n_order = 0                         # requests that became active so far

    # -- joining and leaving -------------------------------------------------------------

    def _joins(self, s, g: int) -> bool:
        """Make *s* (its context done, about to generate in iteration *g*) a member, if it can be
        one: it has tokens left to deliver and its reservation covers every token it will hold."""
        p0, c0 = s.planned, s.computed
        steps = s.target - p0 + self.extra_token         # iterations it will run in
        if s.target - p0 < 1 or -(-(c0 + steps) // self.tpb) > s.need_total:
            return False
        if s.held != -(-c0 // self.tpb):
            return False
        s.gf, s.gc0, s.gp0 = g, c0, p0
        self._members[s.order] = s
        self._gN += 1
        if s.warm:
            self._gW += 1
        k = c0 - g
        self._gS += k
        self._gcnt[k % self.tpb] += 1
        self._gheld += s.held
        self._gneed += s.need_total
        key = g + s.target - p0 - 1
        fin = self._gfin.get(key)
        if fin is None:
            self._gfin[key] = [s]
        else:
            fin.append(s)
        return True

    def _materialise(self, s) -> None:
        """Bring a member's counters up to date (after the last iteration formed) and mark it out."""
        ran = self._gidx - s.gf                   # iterations formed with it
        s.computed = s.gc0 + ran
        s.planned = s.gp0 + ran
        s.held = -(-s.computed // self.tpb)
        s.gf = -1

    def _leave(self, s, end: float) -> None:
        """Take a member whose last token came out at *end* out of the group."""
        k = s.gc0 - s.gf
        self._materialise(s)
        s.out = s.target
        s.last_token = end
        del self._members[s.order]
        self._gN -= 1
        if s.warm:
            self._gW -= 1
        self._gS -= k
        self._gcnt[k % self.tpb] -= 1
        self._gheld -= s.held
        self._gneed -= s.need_total

    def _group_seqs(self) -> list:
        """Every active request in the order they became active (members' counters as they
        are after the last iteration formed)."""
        members = list(self._members.values())
        for s in members:
            ran = self._gidx - s.gf
            s.computed = s.gc0 + ran
            s.planned = s.gp0 + ran
            s.held = -(-s.computed // self.tpb)
        return sorted(members + self.active, key=_by_order)

    # -- forming an iteration ---------------------------------------------------------------

    def _capacity_grouped(self) -> list:
        """``GUARANTEED_NO_EVICT`` over the non-members (``self.active``); members are started."""
        active = self.active
        started = [s for s in active if s.computed > 0]
        if len(started) == len(active):
            return started
        pending = [s for s in active if s.computed <= 0]
        available = (self.pool.num_free - (self._gneed - self._gheld)
                     - sum(r for r in [s.need_total - s.held for s in started] if r > 0))
        approved = started
        n = self._gN + len(started)
        for s in pending:
            if n >= self.max_batch or s.need_total > available:
                break
            approved.append(s)
            n += 1
            available -= s.need_total
        return approved

    def _schedule_grouped(self):
        """:meth:`~labsim_trtllm.executor.Replica.schedule` with the group: the members as
        aggregates, everything else walked as the plain executor walks it."""
        active = self.active
        if not active and (not self.waiting or self._gN >= self.max_batch):
            return self._group_only_step()
        while self.waiting and self._gN + len(active) < self.max_batch:
            s = self.waiting.popleft()
            s.order = self._n_order
            self._n_order += 1
            active.append(s)
        approved = self._capacity_grouped()
        g = self._gidx
        self._gidx = g + 1
        tpb = self.tpb
        budget = self.max_tokens - self._gN
        room = self.max_batch - self._gN
        gens, contexts = [], []
        gen_blocks = 0
        decode_ctx = 0
        fresh = set()
        joined = False
        for s in approved:
            if room <= 0:
                break
            c = s.computed
            if c >= s.ctx_len:
                if s.planned > s.target:
                    continue
                if self._joins(s, g):                      # counted with the group below
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
            if s.computed == 0:
                hits = self._hits(s)
                rest = s.ctx_len - len(hits) * self.tpb
                if not self.chunked and rest > budget:
                    break
                self._start_context(s, hits)
                fresh.add(id(s))
            rest = s.ctx_len - s.computed
            if not self.chunked:
                if rest > budget:
                    break
                budget -= rest
            contexts.append([s, rest])
            room -= 1
        if joined:
            self.active = [s for s in active if s.gf < 0]
        if self.chunked and contexts and sum(n for _, n in contexts) > budget:
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
            contexts = kept
        n = self._gN
        if n:
            blocks = self._gcnt[-g % tpb]
            gen_blocks += blocks
            self._gheld += blocks
            decode_ctx += self._gS + n * (g + 1)
        if gen_blocks:
            self._take(gen_blocks)
        step = self._allocate(gens, contexts, decode_ctx)
        if n:
            step.decodes += n
            step.tokens += n
        step.gidx = g
        step.group = n
        step.group_warm = self._gW
        self._ahead = step
        return step

    def _group_only_step(self):
        """The usual iteration: the members alone (no context, nothing else to walk)."""
        from labsim_trtllm.executor import Step

        g = self._gidx
        self._gidx = g + 1
        n = self._gN
        blocks = self._gcnt[-g % self.tpb]
        if blocks:
            self._gheld += blocks
            self._take(blocks)
        step = Step.__new__(Step)
        step.gens = step.contexts = step.chunks = ()
        step.decodes = step.tokens = step.group = n
        step.decode_ctx = self._gS + n * (g + 1)
        step.start = step.end = 0.0
        step.gidx = g
        step.group_warm = self._gW
        step.left_warm = 0
        self._ahead = step
        return step

    # -- applying an iteration's outputs ----------------------------------------------------------

    def _commit_grouped(self, step) -> None:
        """:meth:`~labsim_trtllm.executor.Replica._commit` with the group."""
        end = step.end
        finished = []
        walked = []                                        # (order, gap) of walked generations
        fe_after = self.fe_after
        for s in step.gens:
            if s.finished:
                continue                                   # the overlap scheduler's extra step
            out = s.out = s.out + 1
            if out == 1:
                s.req.first_token_s = end + fe_after
            elif s.warm:
                walked.append((s.order, end - s.last_token))
            s.last_token = end
            if out >= s.target:
                finished.append(s)
        done = self._gfin.pop(step.gidx, None) if step.group else None
        if done:
            finished.extend(done)
            finished.sort(key=_by_order)
        # members that ran in this iteration, less those that finished since it was formed;
        # each waited since the previous iteration's end
        n_warm = step.group_warm - step.left_warm if step.group else 0
        uniform = end - self._last_end
        ctx_gaps = []
        reuse = self.reuse
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
                ctx_gaps.append(end - s.last_token)
            s.last_token = end
            if s.out >= s.target:
                finished.append(s)
        self._record_gaps(step, n_warm, uniform, walked, ctx_gaps)
        self._last_end = end
        flops, nbytes = self.pricer.work(step.chunks, step.decodes, step.decode_ctx)
        used = self.pool.num_used
        active = self.active
        waiting = len(self.waiting) + [s.computed for s in active].count(0)
        self.metrics.step(self.index, step.start, end - step.start, 1, step.tokens, len(step.chunks),
                          step.decodes, self._gN + len(active), waiting, used, flops, nbytes,
                          used * (end - step.start), None)
        if done:
            warm = 0
            for s in done:
                warm += s.warm
                self._leave(s, end)
            ahead = self._ahead
            if ahead is not None and ahead is not step:    # formed already, with them in it
                ahead.left_warm += warm
        if finished:
            self._finish(finished, end)

    def _record_gaps(self, step, n_warm: int, uniform: float, walked: list, ctx_gaps: list) -> None:
        """The iteration's inter-token gaps, as the plain executor records them: the generation
        requests' in running order, then the contexts'; one count when all are equal."""
        itl = self.metrics.itl
        values = [g for _, g in walked] + ctx_gaps
        if n_warm:
            if values.count(uniform) == len(values):      # the usual iteration
                itl.add_uniform(uniform, n_warm + len(values))
                return
            g = step.gidx
            rows = [(s.order, uniform) for s in self._members.values() if s.warm and s.gf <= g]
            rows.extend(walked)
            rows.sort(key=_first)
            itl.add([gap for _, gap in rows] + ctx_gaps)
        elif values:
            if values.count(values[0]) == len(values):
                itl.add_uniform(values[0], len(values))
            else:
                itl.add(values)


def _first(row):
    return row[0]


def _by_order(s) -> int:
    return s.order


__all__ = ["GenerationGroup"]

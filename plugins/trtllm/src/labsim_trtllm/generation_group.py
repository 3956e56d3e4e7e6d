"""The generation group: requests that generate one token a step, kept as aggregates.

Under ``GUARANTEED_NO_EVICT`` a started request, once its context is done,
is in every iteration it can be in until it finishes: the capacity scheduler
keeps every started request, the micro-batch scheduler cannot run out of room
(at most ``max_batch_size`` requests are active, and ``max_batch_size ≤
max_num_tokens`` is required for the group), and nothing is paused. So those
requests advance in lockstep and the executor keeps them as aggregates
instead of walking them each iteration. With pipeline parallelism P a request
is in one micro-batch at a time, so the requests settle into P *cohorts*, one
per micro-batch in flight, each a group of its own (a cohort's iterations are
the micro-batches formed with it). Per cohort:

* how many there are (and how many count in the statistics);
* the sum of their contexts, from which each iteration's decode context follows;
* how many cross a KV-block boundary at each iteration (a request needs a new
  block every ``tokens_per_block`` tokens, so a count per phase suffices);
* the iteration whose outputs complete each of them;
* the blocks they hold and the blocks their whole lifetime reserves (what the
  capacity scheduler subtracts before admitting a new request).

A member's own counters are brought up to date only when it leaves (it
finishes, or the run ends with it inside). Iteration ``g`` of a cohort
(``Step.gidx``) runs every member that joined at or before ``g``; a member that joined at
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

:class:`GenerationGroup` is the layer of :class:`labsim_trtllm.executor.Replica` over its state
(:mod:`labsim_trtllm.state`).
"""

from __future__ import annotations

import math
from heapq import heappop, heappush
from typing import Any

from labsim_trtllm.seq import Seq, Step
from labsim_trtllm.state import ExecutorState

#: a span's iterations are priced a chunk at a time (their attention in one loop): as many as
#: would fit before the next event at the last iteration's length, and one more, at most
#: SPAN_PRICES_MOST; one at a time when fewer than SPAN_PRICES_LEAST fit. A chunk's prices
#: past the next event are thrown away, but one price alone is a call through three compiled
#: groups (the engine's, the cost model's, the device's): about 5.5 k instructions, where a
#: chunk costs some 6 k and 1 k a price. At 3 rather than 8, a replay of the Azure conversation
#: trace (about 5 requests a second, 22 iterations a request, spans cut every dozen) prices
#: about 3.5 k instructions a request fewer; 16 requests a second, 1.6 k fewer.
SPAN_PRICES_LEAST = 3
SPAN_PRICES_MOST = 256
#: a chunk that ends at the next finish (before the next event) is priced from this many
#: iterations: none of its prices is thrown away
SPAN_PRICES_TO_FINISH = 3
#: an iteration index no cohort reaches (no member left to finish)
NO_FINISH = 1 << 60


class Cohort:
    """The aggregates of one group of members: all of them without pipeline parallelism, the
    members of one micro-batch in flight with it."""

    __slots__ = ("members", "n", "warm", "S", "cnt", "fin", "fin_at", "gidx", "last_end", "inflight",
                 "fresh")

    def __init__(self, tokens_per_block: int):
        self.members: dict[int, Seq] = {}         # order → Seq
        self.n = 0                                 # members
        self.warm = 0                              # members that count in the statistics
        self.S = 0                                 # Σ (c0 − f)
        self.cnt = [0] * tokens_per_block          # members per (c0 − f) mod tokens_per_block
        self.fin: dict[int, list[Seq]] = {}        # iteration → members its outputs complete
        #: a heap of fin's iterations (every one of them; one that left fin is dropped when it
        #: comes to the top): the next finish without a walk of fin (:func:`next_finish`)
        self.fin_at: list[int] = []
        self.gidx = 0                              # the next iteration's index
        self.last_end = 0.0                        # when its last iteration's outputs came out
        self.inflight = False                      # a micro-batch formed with it is in flight
        self.fresh: list[Seq] = []                 # joined now, last token not at last_end (PP)


def add_finish(co: Cohort, g: int, s: Seq) -> None:
    """Member *s* of *co* finishes after iteration *g* (in :attr:`Cohort.fin` and its heap)."""
    done = co.fin.get(g)
    if done is None:
        co.fin[g] = [s]
        heappush(co.fin_at, g)
    else:
        done.append(s)


def clear_finishes(co: Cohort) -> None:
    """Forget every finish of *co* (its members left it), in :attr:`Cohort.fin` and its heap."""
    co.fin.clear()
    co.fin_at.clear()


def next_finish(co: Cohort) -> int:
    """The first iteration after which members of *co* finish (``min(co.fin)``, from its heap
    :attr:`Cohort.fin_at`), or NO_FINISH."""
    fin, at = co.fin, co.fin_at
    while at:
        g = at[0]
        if g in fin:
            return g
        heappop(at)
    return NO_FINISH


class GenerationGroup(ExecutorState):
    """Joining, leaving and stepping the generation group (a layer of the executor replica)."""

    def _init_group(self) -> None:
        #: whether generating requests are kept as a group (see the module docstring)
        self.grouped = self.guaranteed and self.max_batch <= self.max_tokens
        self._cohorts = [Cohort(self.tpb) for _ in range(self.pp)]
        self._gN = 0                              # members, every cohort
        self._gheld = 0                           # Σ blocks members hold
        self._gneed = 0                           # Σ blocks members' lifetimes reserve
        self._ahead = None                        # the iteration formed last (overlap: not yet applied)
        self._n_order = 0                         # requests that became active so far

    # -- joining and leaving -------------------------------------------------------------

    def _joins(self, s: Seq, co: Cohort, g: int) -> bool:
        """Make *s* (its context done, about to generate in iteration *g* of cohort *co*) a
        member, if it can be one: it has tokens left to deliver and its reservation covers
        every token it will hold."""
        p0, c0 = s.planned, s.computed
        steps = s.target - p0 + self.extra_token         # iterations it will run in
        if s.target - p0 < 1 or -(-(c0 + steps) // self.tpb) > s.need_total:
            return False
        if s.held != -(-c0 // self.tpb):
            return False
        s.gf, s.gc0, s.gp0 = g, c0, p0
        co.members[s.order] = s
        co.n += 1
        self._gN += 1
        if s.warm:
            co.warm += 1
            if self.pp > 1 and s.last_token != co.last_end:
                co.fresh.append(s)                   # its first gap is its own
        k = c0 - g
        co.S += k
        co.cnt[k % self.tpb] += 1
        self._gheld += s.held
        self._gneed += s.need_total
        add_finish(co, g + s.target - p0 - 1, s)
        return True

    def _materialise(self, s: Seq, co: Cohort) -> None:
        """Bring a member's counters up to date (after the last iteration formed)."""
        ran = co.gidx - s.gf                      # iterations formed with it
        s.computed = s.gc0 + ran
        s.planned = s.gp0 + ran
        s.held = -(-s.computed // self.tpb)

    def _drop(self, s: Seq, co: Cohort) -> None:
        """Take member *s* (counters up to date) out of *co*'s aggregates."""
        k = s.gc0 - s.gf
        s.gf = -1
        del co.members[s.order]
        co.n -= 1
        self._gN -= 1
        if s.warm:
            co.warm -= 1
        co.S -= k
        co.cnt[k % self.tpb] -= 1
        self._gheld -= s.held
        self._gneed -= s.need_total

    def _leave(self, s: Seq, co: Cohort, end: float) -> None:
        """Take a member whose last token came out at *end* out of the group (:meth:`_materialise`
        and :meth:`_drop`, inlined)."""
        gf = s.gf
        ran = co.gidx - gf                        # iterations formed with it
        c = s.computed = s.gc0 + ran
        s.planned = s.gp0 + ran
        held = s.held = -(-c // self.tpb)
        k = s.gc0 - gf
        s.gf = -1
        del co.members[s.order]
        co.n -= 1
        self._gN -= 1
        if s.warm:
            co.warm -= 1
        co.S -= k
        co.cnt[k % self.tpb] -= 1
        self._gheld -= held
        self._gneed -= s.need_total
        s.out = s.target
        s.last_token = end

    def _disband(self, co: Cohort) -> None:
        """Send the members of *co* (not in flight, every iteration applied) back to the
        requests walked one by one, counters exact, to join the cohort being formed."""
        members = sorted(co.members.values(), key=_by_order)
        for s in members:
            self._materialise(s, co)
            self._drop(s, co)
            s.out = s.planned
            s.last_token = co.last_end
        clear_finishes(co)
        self.active = sorted(self.active + members, key=_by_order)

    def _group_seqs(self) -> list[Seq]:
        """Every active request in the order they became active (members' counters as they
        are after the last iteration formed)."""
        members = []
        for co in self._cohorts:
            for s in co.members.values():
                self._materialise(s, co)
                members.append(s)
        return sorted(members + self.active, key=_by_order)

    def _cohort(self) -> Cohort:
        """The cohort the micro-batch being formed runs: the one not in flight (several free
        ones with members are merged first, which a pipeline that is kept full never needs)."""
        cohorts = self._cohorts
        if len(cohorts) == 1:
            return cohorts[0]
        first = busy = None                       # the first free one, the first with members
        for co in cohorts:
            if co.inflight:
                continue
            if not co.n:
                if first is None:
                    first = co
            elif busy is None:
                busy = co
            else:
                self._disband(co)
        chosen = busy if busy is not None else first
        assert chosen is not None, "a cohort not in flight"    # (one is, when a batch is formed)
        return chosen

    # -- forming an iteration ---------------------------------------------------------------

    def _capacity_grouped(self) -> list[Seq]:
        """``GUARANTEED_NO_EVICT`` over the non-members (``self.active``); members are started."""
        active = self.active
        started = [s for s in active if s.computed > 0]
        if len(started) == len(active):
            return started
        pending = [s for s in active if s.computed <= 0]
        available = self.pool.num_free - (self._gneed - self._gheld)
        if started:
            available -= sum(r for r in [s.need_total - s.held for s in started] if r > 0)
        approved = started
        n = self._gN + len(started)
        for s in pending:
            if n >= self.max_batch or s.need_total > available:
                break
            approved.append(s)
            n += 1
            available -= s.need_total
        return approved

    def _with_cohort(self, co: Cohort, g: int, gens: list[Seq], contexts: list, gen_blocks: int,
                     decode_ctx: int) -> Step:
        """Finish forming iteration *g* of cohort *co* (the walked requests' *gens*, *contexts*,
        blocks and decode context counted by the scan): the members' blocks and context, as
        aggregates; the Step is marked as iteration *g* of *co*, the iteration formed last."""
        n = co.n
        if n:
            # the KV blocks the members take in iteration g (counted as held), their context
            blocks = co.cnt[-g % self.tpb]
            self._gheld += blocks
            gen_blocks += blocks
            decode_ctx += co.S + n * (g + 1)
        step = self._allocate(gens, contexts, decode_ctx, gen_blocks)
        if n:
            step.decodes += n
            step.tokens += n
        step.cohort = co
        step.gidx = g
        step.group = n
        step.group_warm = co.warm
        self._ahead = step
        if self.overlap and step.contexts:
            self._join_ahead(step, co, g + 1)
        return step

    def _join_ahead(self, step: Step, co: Cohort, g: int) -> None:
        """Make the requests whose context *step* completes members now, from iteration *g*
        on (the next one), where they would join when it is formed: with the overlap scheduler
        (PP = 1) nothing changes them before that, and its scan reaches each of them (a started
        request comes before every pending one, with room and budget left: at most
        ``max_batch_size ≤ max_num_tokens`` requests run). The aggregates are the same either
        way, and the next iteration, if nothing else runs in it, is formed as the cohort's
        alone (:meth:`_group_only_step`) instead of by a scan."""
        joined = False
        for s, _n, _before, emits, _epoch in step.contexts:
            if emits and self._joins(s, co, g):
                joined = True
        if joined:
            self.active = [s for s in self.active if s.gf < 0]

    def _group_only_step(self, co: Cohort) -> Step:
        """The usual iteration: the cohort's members alone (nothing else to walk); its Step:
        :meth:`_group_step`."""
        g = co.gidx
        co.gidx = g + 1
        n = co.n
        blocks = co.cnt[-g % self.tpb]
        if blocks:
            self._gheld += blocks
            self._take(blocks)
        step = self._group_step(co, g, n, co.S + n * (g + 1), co.warm, 0.0)
        self._ahead = step
        return step

    # -- applying an iteration's outputs ----------------------------------------------------------

    def _commit_grouped(self, step: Step) -> None:
        """:meth:`~labsim_trtllm.executor.Replica._commit` with the group."""
        end = step.end
        co = step.cohort
        assert co is not None, "the group's iterations name their cohort"
        if not step.gens and not step.contexts and not co.fresh:
            return self._commit_group_only(step, co, end)
        finished: list[Seq] = []
        walked = ([(s.order, gap) for s, gap in self._apply_gens(step, end, finished)]
                  if step.gens else [])
        done = co.fin.pop(step.gidx, None) if step.group else None
        if done:
            finished.extend(done)
            finished.sort(key=_by_order)
        # members that ran in this iteration, less those that finished since it was formed;
        # each waited since the cohort's previous iteration ended
        n_warm = step.group_warm - step.left_warm if step.group else 0
        uniform = end - co.last_end
        ctx_gaps: list[float] = []
        if step.contexts:
            self._apply_contexts(step, end, finished, ctx_gaps.append)
        if walked or ctx_gaps or co.fresh:
            self._record_gaps(step, co, n_warm, uniform, walked, ctx_gaps)
        elif n_warm:                              # (_record_gaps of the usual one, inlined)
            self.metrics.itl.add_uniform(uniform, n_warm)
        co.last_end = end
        self._record_step(step)
        if done:
            self._release(step, co, done, end)
        if finished:
            self._finish(finished, end)

    def _release(self, step: Step, co: Cohort, done: list[Seq], end: float) -> None:
        """The cohort's members *done* in *step* leave it; the next iteration, if formed
        already with them in it (PP = 1), counts them as gone."""
        warm = 0
        for s in done:
            warm += s.warm
            self._leave(s, co, end)
        ahead = self._ahead
        if ahead is not None and ahead is not step and self.pp == 1:
            ahead.left_warm += warm

    def _commit_group_only(self, step: Step, co: Cohort, end: float) -> None:
        """:meth:`_commit_grouped` of an iteration that ran the cohort's members alone (the
        usual one), its gaps (one count, every member waited as long) and its row inlined."""
        n_warm = step.group_warm - step.left_warm
        if n_warm:
            self.metrics.itl.add_uniform(end - co.last_end, n_warm)
        co.last_end = end
        # _record_step, for a decode-only iteration of n requests
        n = step.decodes
        start = step.start
        flops, nbytes = self.pricer.decode_work(n, step.decode_ctx)
        used = self.pool.num_used
        active = self.active
        waiting = len(self.waiting) + ([s.computed for s in active].count(0) if active else 0)
        busy = self.pipeline.busy(start, end) if self.pipeline is not None else None
        self.metrics.step(self.index, start, end - start, 1, n, 0, n, self._gN + len(active),
                          waiting, used, flops, nbytes, used * (end - start), busy)
        done = co.fin.pop(step.gidx, None)
        if done:
            self._release(step, co, done, end)
            self._finish(sorted(done, key=_by_order), end, True)

    def _run_span(self, cur: Step, nxt: Step | None, t: float,
                  horizon: float) -> tuple[Step | None, Step | None, float, float | None]:
        """Apply iteration *cur* (group-only, ending at simulated time *t*) and the group-only
        iterations after it that end before *horizon* (the next event) and finish nobody
        that anyone waits on (:meth:`_finish_unseen`), as one event per iteration would,
        without the events: the iterations' rows, gaps, blocks and finishes in the same order
        and with the same arithmetic. *nxt*: the iteration formed while *cur* runs (overlap
        scheduler), else None. Returns ``(cur, nxt, now, wait)`` as the loop has them before
        it sleeps: the first iteration that does not qualify (formed and priced), the one
        formed while it runs, the time the last applied iteration's event would have come,
        and the delay from then to the first's end; or, when the cohort empties,
        ``(cur, None, now, None)`` as the loop has them after a commit (*cur*: the iteration
        formed already, or None)."""
        co = cur.cohort
        assert co is not None, "a span runs a cohort"
        metrics = self.metrics
        step_row = metrics.step
        itl = metrics.itl
        gaps, widths = [], []                  # the iterations' gaps, binned together in order
        # without a steps table, the iterations past the warm-up add to metrics.step's sums held
        # here (handed back before anything else may read them: a finish, the end)
        sums = metrics.steps is None
        warm_up: float = metrics.warm_up
        # (typed: the metrics are a plain object, and compiled code adds typed numbers unboxed)
        num_steps: int = 0
        kv_peak: int = 0
        busy_s: float = 0.0
        s_flops: float = 0.0
        s_bytes: float = 0.0
        kv_s: float = 0.0
        if sums:
            num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak = metrics.step_sums()
        work_terms = self.pricer.decode_work_terms
        wb = 0                                 # the batch size of the work terms below
        # the FLOPs terms are floats (or ints a float times exactly); the bytes terms keep their
        # types (ints or floats, as the model's byte counts are): a steps table prints them
        wp = wa = wl = ws = wh = 0.0
        ww: Any = 0
        wk: Any = 0
        wn: Any = 0
        # the usual model's bytes terms are ints: then their copies here, typed, make the sum
        # in native integers (the same value; a float sum adds it as Python converts it)
        wint = False
        iw: int = 0
        ik: int = 0
        i_n: int = 0
        ibytes: int = 0
        index = self.index
        fin = co.fin
        # the first iteration after which members finish: the cohort, and so the prices, change
        # there (a chunk priced past it would be thrown away)
        next_fin = next_finish(co)
        cnt = co.cnt
        tpb = self.tpb
        overlap = nxt is not None
        # between finishes nothing changes the cohort, the queues or the pool but these
        # iterations' blocks
        running = self._gN
        waiting = len(self.waiting)
        n, warm, S = co.n, co.warm, co.S
        price = self.pricer.decode_price(n)
        # the cohort's iterations priced a chunk at a time (TrtStepPricer.decode_run): their
        # contexts grow by n from one to the next while nobody leaves
        run_prices, run_scale, run_cpu, run_overlap = _run_terms(self.pricer.decode_run(n))
        ahead: list[float] = []                # GPU seconds of the next iterations, by context
        at = 0                                 # the next one's place in ahead
        expect = -1                            # the context it prices
        used = self.pool.num_used
        free = self.pool.num_free
        taken = 0                              # blocks formed iterations took, not yet allocated
        last_end = co.last_end
        # the iteration being applied: its index, start, end, decodes, context, warm members
        g, start, end = cur.gidx, cur.start, cur.end
        b, ctx, nw = cur.decodes, cur.decode_ctx, cur.group_warm - cur.left_warm
        g1 = b1 = ctx1 = nw1 = 0
        if nxt is not None:                    # the one formed while it runs
            g1, b1, ctx1, nw1 = nxt.gidx, nxt.decodes, nxt.decode_ctx, nxt.group_warm - nxt.left_warm
        while True:
            # apply iteration g (_commit_group_only, its row and gaps; then its finishes)
            if nw > 0:                         # (add_uniform counts no fewer)
                gaps.append(end - last_end)
                widths.append(nw)
            last_end = end
            if b != wb:
                wb = b
                wp, wa, wl, ws, wh, ww, wk, wn = work_terms(b)
                wint = type(ww) is int and type(wk) is int and type(wn) is int
                if wint:
                    iw, ik, i_n = ww, wk, wn
            # pricer.decode_work(b, ctx), its arithmetic in its order
            flops = (wp + wa * ctx) * wl / ws + wh
            if wint:
                ibytes = iw + ik * ctx + i_n
            else:
                nbytes = ww + wk * ctx + wn
            u = used + taken
            d = end - start
            if sums and start >= warm_up:
                # step_row(index, start, d, 1, b, 0, b, running, waiting, u, flops, nbytes, u * d,
                # None), inlined: its sums (the iteration begins past the warm-up)
                num_steps += 1
                busy_s += d
                s_flops += flops
                if wint:
                    s_bytes += ibytes
                else:
                    s_bytes += nbytes
                kv_s += u * d
                if u > kv_peak:
                    kv_peak = u
            elif sums:
                metrics.set_step_sums(num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak)
                step_row(index, start, d, 1, b, 0, b, running, waiting, u, flops,
                         ibytes if wint else nbytes, u * d, None)
                num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak = metrics.step_sums()
            else:
                step_row(index, start, d, 1, b, 0, b, running, waiting, u, flops,
                         ibytes if wint else nbytes, u * d, None)
            now = t
            start = end
            # (fin's iterations are next_fin or later, and nothing joins during a span: an
            # iteration before next_fin finishes nobody, without a look in fin)
            done = fin.pop(g, None) if g >= next_fin else None
            if done:
                # (what the span holds handed back first: the finishes report)
                if gaps:
                    itl.add_uniform_each(gaps, widths)
                    gaps, widths = [], []
                if sums:
                    metrics.set_step_sums(num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak)
                # members finish (nobody sees it before its time: _finish_unseen): blocks taken
                # first, then released and freed, as one event per iteration orders them
                if taken:
                    self._gheld += taken
                    self._take(taken)
                    taken = 0
                left = 0
                for s in done:
                    left += s.warm
                    self._leave(s, co, end)
                if overlap:
                    nw1 -= left                # the iteration formed already runs them as gone
                self._finish(sorted(done, key=_by_order), end, True)
                self.owner.last_left_s = now  # the finishing's time (env.now, one event each)
                if sums:
                    num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak = metrics.step_sums()
                running = self._gN
                n, warm, S = co.n, co.warm, co.S
                used = self.pool.num_used
                free = self.pool.num_free
                horizon = min(horizon, self.timers.peek())
                if not n or self.active or self.waiting:
                    # the cohort is empty: the loop goes on from its top, as after a commit
                    co.last_end = last_end
                    self.clock = end
                    nxt = self._group_step(co, g1, b1, ctx1, nw1, end) if overlap else None
                    self._ahead = nxt
                    return nxt, None, now, None
                price = self.pricer.decode_price(n)
                run_prices, run_scale, run_cpu, run_overlap = _run_terms(self.pricer.decode_run(n))
                next_fin = next_finish(co)
                ahead = []
                expect = -1
            # the next one runs; with overlap, another is formed while it does
            h = co.gidx
            co.gidx = h + 1
            blocks = cnt[-h % tpb]
            if blocks:
                if taken + blocks > free:
                    self._take(taken + blocks)      # raises: the scheduler let through too much
                taken += blocks
            if overlap:
                g, b, ctx, nw = g1, b1, ctx1, nw1
                g1, b1, ctx1, nw1 = h, n, S + n * (h + 1), warm
            else:
                g, b, ctx, nw = h, n, S + n * (h + 1), warm
            if b != n:                         # (formed before members left: overlap)
                end = start + self.pricer.decode_price(b)(ctx)
            else:
                if run_prices is not None and (ctx != expect or at >= len(ahead)):
                    # a new chunk, when the iterations that fit before the next event (at the
                    # last one's length) are enough to be worth it
                    fit = (horizon - start) / d if d > 0.0 else math.inf
                    # or, when members finish before then, up to their iteration (the cohort
                    # changes there; every price of such a chunk is used, so a few are worth it)
                    to_fin = next_fin - g + 1
                    count = 0
                    if to_fin <= fit:
                        if to_fin >= SPAN_PRICES_TO_FINISH:
                            count = to_fin if to_fin < SPAN_PRICES_MOST else SPAN_PRICES_MOST
                    elif fit >= SPAN_PRICES_LEAST:
                        count = int(fit) + 2 if fit < SPAN_PRICES_MOST else SPAN_PRICES_MOST
                    if count:
                        ahead = run_prices(ctx, count)
                        at = 0
                        expect = ctx
                if run_prices is not None and ctx == expect and at < len(ahead):
                    # price(ctx), its arithmetic, from the chunk
                    gpu = ahead[at] * run_scale
                    at += 1
                    expect += n
                    cpu = run_cpu
                    end = start + ((gpu if gpu >= cpu else cpu) if run_overlap else gpu + cpu)
                else:
                    end = start + price(ctx)
            wait = end - now
            if wait < 0.0:
                wait = 0.0
            t = now + wait
            if not (t < horizon and (g < next_fin or g not in fin or self._finish_unseen(fin[g]))):
                break
        if gaps:
            itl.add_uniform_each(gaps, widths)
        if sums:
            metrics.set_step_sums(num_steps, busy_s, s_flops, s_bytes, kv_s, kv_peak)
        co.last_end = last_end
        self.clock = start
        if taken:
            self._gheld += taken
            self._take(taken)
        cur = self._group_step(co, g, b, ctx, nw, start)
        cur.end = end
        if overlap:
            nxt = self._group_step(co, g1, b1, ctx1, nw1, 0.0)
        self._ahead = nxt if overlap else cur
        return cur, nxt, now, wait

    def _finish_unseen(self, members: list[Seq]) -> bool:
        """Whether *members* finishing can be applied before its simulated time (in a span):
        nobody acts on it then (no closed loop, no conversation's next turn waits on it)."""
        unseen = getattr(self.owner, "finish_unseen", None)
        if unseen is None:
            return False
        for s in members:
            if not unseen(s.req):
                return False
        return True

    def _group_step(self, co: Cohort, g: int, b: int, ctx: int, nw: int, start: float) -> Step:
        """Iteration *g* of *co* with its *b* members alone (decode context *ctx*, *nw* of them
        warm) from *start*: the Step of :meth:`_group_only_step` and of a span's iterations."""
        step = Step([], [], [], ctx, b)             # (decodes and tokens: b, set below)
        step.decodes = b
        step.start = start
        step.cohort = co
        step.gidx = g
        step.group = b
        step.group_warm = nw
        return step

    def _record_gaps(self, step: Step, co: Cohort, n_warm: int, uniform: float,
                     walked: list[tuple[int, float]], ctx_gaps: list[float]) -> None:
        """The iteration's inter-token gaps, as the plain executor records them: the generation
        requests' in running order, then the contexts'; one count when all are equal."""
        values = [g for _, g in walked] + ctx_gaps if walked or ctx_gaps else []
        fresh = co.fresh if step.group else None
        if n_warm:
            if not fresh and (not values or values.count(uniform) == len(values)):  # the usual
                self.metrics.itl.add_uniform(uniform, n_warm + len(values))
                return
            g = step.gidx
            own = {id(s) for s in fresh} if fresh else ()
            rows = [(s.order, end_gap(s, own, uniform, step.end))
                    for s in co.members.values() if s.warm and s.gf <= g]
            rows.extend(walked)
            rows.sort(key=_first)
            values = [gap for _, gap in rows] + ctx_gaps
        self._add_gaps(values)
        if fresh:
            co.fresh = []


def _run_terms(run: tuple | None) -> tuple[Any, float, float, bool]:
    """A ``TrtStepPricer.decode_run``'s prices function, scale, CPU seconds and overlap (the
    numbers typed), or ``(None, 0.0, 0.0, False)`` for None (no chunks: one price at a time)."""
    if run is None:
        return None, 0.0, 0.0, False
    return run[0], run[1], run[2], run[3]


def end_gap(s: Seq, own: set[int] | tuple, uniform: float, end: float) -> float:
    """A member's gap in an iteration ending at *end*: since its own last token if it joined
    with one not at the cohort's last end (*own*), else the cohort's *uniform* gap."""
    return end - s.last_token if id(s) in own else uniform


def _first(row: tuple[int, float]) -> int:
    return row[0]


def _by_order(s: Seq) -> int:
    return s.order


__all__ = ["Cohort", "GenerationGroup"]

"""Fast-forward under pipeline parallelism: the engines' batches landed with few events of their own.

With ``pipeline_parallel_size`` P a replica runs P engines (:mod:`labsim_llm.engine.pipeline`),
each with a batch in flight; stepped one event per batch, a P-fold pipeline makes about P
times as many events as one engine does. Yet most batches are *quiet*: the engine's decode
group alone decodes one token each, nobody finishes, nobody waits to be admitted, and the
blocks the next batch needs are free. Landing such a batch (its tokens, inter-token gaps and
step row) and dispatching the engine's next one (its blocks, its price, its place in the
:class:`~labsim_llm.engine.pipeline.StagePipeline`) touches nothing outside the replica's
own state, and reads nothing that another process could change before the batch ends.

:class:`PipelineSpan` is one SimPy process per pipeline-parallel replica. An engine that
dispatches a batch hands it over (:meth:`PipelineSpan.ride`) and waits. The span lands the
handed-over batches in the order their ends fall (the order SimPy would process their
timeouts: the stage pipeline ends batches in the order they were dispatched) and dispatches
each engine's next one with the same arithmetic the engine's loop uses:

* a quiet batch that ends before the next scheduled event (and within the run's
  ``max_simulation_time``) is landed at once, ahead of the clock — nothing can happen
  before it ends that would change it;
* a quiet batch that ends later is landed when it ends (the span sleeps until then: a
  request may reach its engine meanwhile);
* any other batch — prompts run, requests finish or wait, blocks run short — is landed by
  the span when it ends, as the engine's loop would land it (its reports, the blocks it
  frees, made then), and the span takes the loop's next turn: it dispatches the engine's
  next batch (:meth:`SpanSteps.commit_and_dispatch`). As the span is awake then, the other
  engines' quiet batches after it need no wake-up of their own. If nobody finishes in it
  (its landing reports nothing: :meth:`SpanSteps.lands_unseen`) and it ends before the next
  scheduled event, it is landed at once, ahead of the clock, as a quiet batch is;
* only when that turn dispatches nothing — the engine idles, or waits while the others hold
  the KV blocks — is the engine's loop woken, at once, to carry on.

A run of quiet batches landed ahead of the clock is the hot loop of a pipelined replica (a
few batches per request). Where the engines share one KV pool and keep no steps table, it
runs in :func:`labsim_vllm.quiet_batches.land_quiet_batches` (where the replica's twins are
compiled, :mod:`labsim_vllm.native`) on a copy of the batches' and engines' state, handed back
when it stops; otherwise, and for steps that start in the warm-up, one landing at a time.

Every step is still priced, timed and recorded one by one, in the order one event per batch
takes them: the outputs are identical (tested), only the SimPy events are fewer. As with
:mod:`labsim_vllm.fast_forward`, another process's event at exactly a batch's end instant
(a float tie) may be taken before the batch where one event per batch would take it after.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, ClassVar, Final

from labsim_llm.engine.timers import Timers
from labsim_vllm.quiet_batches import LAND_ELSEWHERE, PRICE_MISSING, QuietLane, QuietRun, land_quiet_batches
from labsim_vllm.seq import Step
from labsim_vllm.state import ReplicaState

if TYPE_CHECKING:
    from collections.abc import Callable

    from labsim_llm.engine.pipeline import PipelinedReplica


def delay_to(now: float, t: float) -> float | None:
    """A delay *d* with ``now + d == t`` in floating point (*t* ≥ *now*), so a timeout of *d*
    fires exactly at *t*; None when there is none (``t − now`` alone can miss by a rounding
    when *now* < *t*/2, and *t* may lie between two sums)."""
    d = t - now
    for _ in range(4):
        got = now + d
        if got == t:
            return d
        d = math.nextafter(d, math.inf if got < t else -math.inf)
    return None


#: (running, waiting) handed to ``ServingMetrics.step`` when it keeps no steps table: only its
#: rows show them, so the replica's queues are not counted then
NO_ROW_QUEUES = (0, 0)

#: integers below this are doubles, and so are their sums and products while they stay below it
EXACT_DOUBLES = 2**53

#: the work terms, as floats, of a batch that :meth:`PipelineSpan._run_ahead_lanes` does not land
NO_TERMS: Final = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

#: decode steps priced at once, at most, when a batch's next context is not in its price table yet
PRICED_AHEAD = 16

INF = math.inf


class Batch:
    """A batch an engine handed to the span: its step (``group_only``: the decode group alone),
    start and end (the engine's ``clock``), the instant its timeout would fire (``due``), its
    dispatch order (SimPy's among equal instants), the event its engine waits on (``park``),
    and, once a batch of the group alone, what prices the engine's next batches while its
    decode group stays as it is (:meth:`SpanSteps.decode_pricing`: ``decodes`` the group's
    size, ``price``, ``cpu``, ``work``, ``prices``, ``table``, ``exact``, ``terms``)."""

    __slots__ = ("engine", "step", "start", "due", "order", "park", "group_only", "alone",
                 "decodes", "price", "prices", "table", "cpu", "work", "exact", "terms")

    engine: SpanSteps           # the engine (a labsim_vllm.scheduler.Replica)
    step: Step
    start: float
    due: float
    order: int
    park: Any                   # the SimPy event its engine waits on
    group_only: bool
    alone: bool
    decodes: int
    price: Callable[[int], float]
    prices: Any                 # the pricer's decode_steps_fn, or None
    table: list | None
    cpu: float
    work: tuple
    exact: int
    #: *work*'s terms as floats (``float()`` of each), for the compiled landings' lanes
    terms: tuple[float, float, float, float, float, float, float, float]

    def __init__(self, engine, step: Step, start: float, due: float, order: int, park):
        self.engine = engine
        self.step = step
        self.start = start
        self.due = due
        self.order = order
        self.park = park
        self.group_only = not step.entries and step.group > 0   # the decode group alone
        self.alone = False          # (_run_ahead's: whether its engine's group runs alone)
        self.decodes = 0            # (0: not priced; a priced batch has at least one decode)
        if self.group_only:
            self.priced(step.decodes)

    def priced(self, decodes: int) -> None:
        """Set what prices the engine's batches of *decodes* requests (its decode group's)."""
        self.decodes = decodes
        self.price, self.cpu, self.work, self.prices, self.table, self.exact, self.terms = \
            self.engine.decode_pricing(decodes)

    def gpu_seconds(self, ctx: int) -> float:
        """``price(ctx)``, bit for bit, from the table (filled a run of steps ahead: the
        pricer's ``decode_steps_fn`` adds nothing to ``decode_step_fn``'s prices, here)."""
        table = self.table
        if table is None or ctx < self.decodes:
            return self.price(ctx)
        if ctx < len(table):
            got = table[ctx]
            if got is not None:
                return got
        # as many as the group may stay as it is: until its next member finishes, at most
        engine = self.engine
        heap, fin = engine._fin_keys, engine._fin
        while heap and heap[0] not in fin:
            heapq.heappop(heap)
        ahead = heap[0] - engine.G + 1 if heap else PRICED_AHEAD
        return self.prices(ctx, min(max(ahead, 1), PRICED_AHEAD))[0]


class SpanSteps(ReplicaState):
    """What an engine offers :class:`PipelineSpan`: whether a handed-over batch may be landed
    ahead of the clock, and landing it then dispatching the next (a part of the vLLM replica)."""

    def quiet_batch(self) -> bool:
        """Whether the decode-only batch in flight lands doing nothing but count — no member
        of the decode group finishes, V0's output lag holds nothing to release — and the next
        step is the decode group alone again, its blocks free: nobody waits to be admitted,
        nobody runs outside the group, nothing would be preempted."""
        # group_alone() and next_step_quiet(pool.num_free), inlined (asked at every turn of the span)
        if (self.waiting or self._special or self._lag_first or self._lag_done
                or self._list is not None or not self.BULK or not 0 < self._nD <= self.max_tokens):
            return False
        G = self.G
        return G not in self._fin and self._cnt[G % self.block_size] <= self.pool.num_free

    def group_alone(self) -> bool:
        """The part of :meth:`quiet_batch` that only an arrival or a batch that is not quiet
        changes: the decode group alone runs, nobody waits, the output lag holds nothing."""
        return (not self.waiting and not self._special and not self._lag_first
                and not self._lag_done and self._list is None and self.BULK
                and 0 < self._nD <= self.max_tokens)

    def next_step_quiet(self, free: int) -> bool:
        """The part of :meth:`quiet_batch` that each step changes: nobody finishes in the
        batch in flight, and the next step's blocks are free (*free*: the pool's free blocks)."""
        G = self.G
        return G not in self._fin and self._cnt[G % self.block_size] <= free

    def lands_unseen(self, step) -> bool:
        """Whether landing *step*, this engine's batch in flight, changes nothing outside the
        replica: nobody finishes in it (no report), V0's output lag holds nothing to release.
        (Its first tokens' times are only read when their requests finish.)"""
        return not (self._lag_first or self._lag_done) and not self.finishing(step)

    def finishing(self, step: Step) -> list:
        """The requests that finish when *step*, this engine's batch in flight, lands: the
        decode group's members at their last step, and entries that emit their last token."""
        members = self._fin.get(self.G) if self._list is None else None
        done = [seq.req for seq in members] if members else []
        for seq, _n, _before in step.entries:
            if seq.computed >= seq.num_tokens and seq.out + 1 >= seq.target:
                done.append(seq.req)
        return done

    def commit_and_dispatch(self, batch: Batch) -> Any:
        """Land *batch* (any step) at its end (``self.clock``, now) as the step loop does — its
        outputs, its row, the engines waiting for blocks woken — then take the loop's next turn
        when it dispatches a batch: *batch* then holds it, and None is returned. Else what
        the loop does next is its own (it idles, releases V0's held outputs with nothing to
        run, or its scheduler steps one at a time): returns what to wake its loop with, the
        event to wait on when the other engines hold the blocks, else False."""
        peers, pipeline = self.peers, self.pipeline
        assert peers is not None and pipeline is not None    # (a pipeline-parallel replica's)
        end = self.clock
        if batch.group_only and self._list is None and not self._lag_first and not self._lag_done:
            # (a request waits, blocks run short, or members finish)
            self._land_group(batch, end)
            if self.G in self._fin:
                self._after_step([], False, end)    # they leave the group, and are reported
        else:
            self._commit(batch.step, batch.start, end)
        peers.batch_ended()
        if self.group_alone():
            # the usual turn: the group alone again (_schedule_group's first case), its blocks
            G = self.G
            need = self._cnt[G % self.block_size]
            if need <= self.pool.num_free and not self.multi_step:
                if need:
                    self.pool.allocate(need)
                self.G = G = G + 1
                nD = self._nD
                if batch.group_only:
                    # the group alone again: its step object reused (as land_and_dispatch does),
                    # set as Step([], False, nD, ctx) sets it
                    step = batch.step             # (its entries and chunks: none)
                    step.group = step.decodes = step.tokens = nD
                    step.decode_ctx = self._S + nD * G
                    step.preempted = False
                    step.pure_decode = True
                else:
                    batch.step = step = Step([], False, nD, self._S + nD * G)
                    batch.group_only = True
                batch.start = end
                if nD != batch.decodes:
                    batch.priced(nD)
                self.clock = pipeline.run(end, batch.cpu, batch.gpu_seconds(step.decode_ctx))
                return None
        # the loop's turn (run(), under PP with the span: no async scheduling, no span of its
        # own), as far as it dispatches a batch
        if not self.waiting and not self._num_running():
            return False                        # it idles (after releasing held outputs)
        if self.multi_step or not self.gpus.exclusive:
            return False
        step = self.schedule()
        if not step.entries and not step.group:
            return peers.changed()         # the others hold the blocks
        chunks = step.chunks
        decodes = step.decodes
        gpu = self.pricer.step_time(chunks, decodes, step.decode_ctx)
        cpu = self.overhead + self.overhead_per_req * (len(chunks) + decodes)
        self.clock = pipeline.run(end, cpu, gpu)
        batch.step = step
        batch.start = end
        batch.group_only = group_only = not step.entries and step.group > 0
        if group_only and decodes != batch.decodes:
            batch.priced(decodes)
        return None

    def _land_group(self, batch: Batch, end: float) -> None:
        """Land *batch*, the decode group alone with V0's output lag empty, at *end* as
        :meth:`_commit` does up to :meth:`_after_step` (the caller's, when members finish) —
        the group's inter-token gaps and the step's row (:meth:`_record`, with the work priced
        as :meth:`land_and_dispatch` prices it) — without its walk."""
        peers, pipeline = self.peers, self.pipeline
        assert peers is not None and pipeline is not None    # (a pipeline-parallel replica's)
        step = batch.step
        start = batch.start
        if self._fresh:
            self._group_gaps(end, self._g_end)
        else:                                       # _group_gaps, inlined
            self.metrics.itl.add_uniform(end - self._g_end, self._nW)
        self._g_end = end
        used = peers.kv_blocks_used()
        running, waiting = peers.queue_lengths() if self.metrics.steps is not None else NO_ROW_QUEUES
        ctx = step.decode_ctx
        p, a, l, s, h, w, k, n = batch.work
        self.metrics.step(self.index, start, end - start, 1, step.tokens, 0, step.decodes, running,
                          waiting, used, (p + a * ctx) * l / s + h, w + k * ctx + n,
                          used * (end - start), pipeline.busy(start, end))

    def decode_pricing(self, decodes: int) -> tuple:
        """``(f, cpu, work, prices, table, exact, terms)`` of a decode-only step of *decodes* requests:
        ``f(ctx)`` its GPU seconds (``step_time((), decodes, ctx)``, bit for bit) and *cpu* its
        engine-core seconds, as the step loop works them out; *work* the terms of its FLOPs
        and bytes (:meth:`~labsim_llm.engine.StepPricer.decode_work_terms`); *prices* the
        pricer's ``decode_steps_fn`` (``f`` a run of contexts at a time) and *table* the
        prices it found so far by context (the contexts of a batch size recur from request
        to request), or both None; *exact* the last context whose bytes ``w + k·ctx + n``
        stay below 2**53, so that doubles add them exactly as Python adds the integers
        (:class:`~labsim_vllm.quiet_batches.QuietLane`'s ``context_limit``); *terms* *work*'s
        terms as floats (a lane's, converted once). Kept by batch
        size: the group's size changes often."""
        got = self._span_pricing.get(decodes)
        if got is None:
            pricer = self.pricer
            prices = pricer.decode_steps_fn(decodes)
            work = pricer.decode_work_terms(decodes)
            p, a, l, s, h, w, k, n = work
            got = (pricer.decode_step_fn(decodes), self.overhead + self.overhead_per_req * (0 + decodes),
                   work, prices, prices.table if prices is not None else None,
                   int((EXACT_DOUBLES - abs(w) - abs(n)) // max(abs(k), 1)),
                   (float(p), float(a), float(l), float(s), float(h), float(w), float(k), float(n)))
            self._span_pricing[decodes] = got
        return got

    def land_and_dispatch(self, batch: Batch, running: int, waiting: int, used: int) -> int:
        """Land the quiet decode-only *batch* at its end (``self.clock``) as :meth:`_commit`
        does when :meth:`quiet_batch` holds — the group's inter-token gaps and the step's row,
        *running*, *waiting* and *used* being the replica's requests and KV blocks — then
        dispatch the next step, the decode group alone, as the step loop does:
        :meth:`_schedule_group`'s blocks and context, priced and timed through the stage
        pipeline. The batch then holds the next step (its ``step`` object reused: the same
        group, one token further) and its start. Returns the blocks the next step needs: the
        caller allocates them (several steps' at once: one call takes the same blocks as
        several)."""
        peers, pipeline = self.peers, self.pipeline
        assert peers is not None and pipeline is not None    # (a pipeline-parallel replica's)
        step = batch.step
        start = batch.start
        end = self.clock
        nD = self._nD
        if self._fresh:
            self._group_gaps(end, self._g_end)
        else:                                       # _group_gaps, inlined
            self.metrics.itl.add_uniform(end - self._g_end, self._nW)
        self._g_end = end
        # the next step: _schedule_group's group alone, priced as the loop prices it
        G = self.G
        need = self._cnt[G % self.block_size]
        self.G = G + 1
        ctx = step.decode_ctx
        step.decode_ctx = nxt = self._S + nD * (G + 1)
        batch.start = end
        table = batch.table                         # batch.gpu_seconds(nxt), inlined for a hit
        gpu = table[nxt] if table is not None and nD <= nxt < len(table) else None
        if gpu is None:
            gpu = batch.gpu_seconds(nxt)
        busy, self.clock = pipeline.turn(start, end, batch.cpu, gpu)
        # _record, inlined for a decode-only step (its chunks none, its tokens nD), with
        # pricer.decode_work's arithmetic
        p, a, l, s, h, w, k, n = batch.work
        self.metrics.step(self.index, start, end - start, 1, nD, 0, nD, running, waiting, used,
                          (p + a * ctx) * l / s + h, w + k * ctx + n, used * (end - start), busy)
        return need


class PipelineSpan:
    """The process that lands the quiet decode-only batches of one pipeline-parallel replica.

    :param env: the SimPy environment.
    :param peers: the :class:`~labsim_llm.engine.pipeline.PipelinedReplica` (its replica-wide
        figures for each step's row; engines waiting for blocks, woken after a batch ends).
    :param limit: the run's ``max_simulation_time``: no batch ending later is landed ahead.
    """

    #: whether runs of quiet batches go to :func:`~labsim_vllm.quiet_batches.land_quiet_batches`
    #: (:meth:`_run_ahead_lanes`): where it runs compiled, as this class does (in this module's
    #: twin, :mod:`labsim_vllm.native`); in pure Python the copy of the state it works on costs
    #: more than the loop of :meth:`_run_ahead_each` (the outputs are the same)
    LANES: ClassVar[bool] = __name__.startswith("labsim_vllm.native.")

    env: Any                    # the SimPy environment
    peers: PipelinedReplica
    limit: float
    _joined: Any                # a SimPy event, else None
    _process: Any               # the span's SimPy process once started, else None

    def __init__(self, env, peers, limit: float = math.inf):
        self.env = env
        #: the environment's timers (the span's waits: its queue and counter looked up once)
        self.timers = Timers(env)
        self.peers = peers
        self.limit = limit
        self._batches: list[Batch] = []     # by (due, order): the head ends first
        self._order = 0                     # batches dispatched so far (ties: SimPy's order)
        self._joined = None                 # fires when a batch arrives at an empty span
        self._process = None

    # -- the engines' side --------------------------------------------------------------

    def ride(self, engine: SpanSteps, step: Step, start: float):
        """Hand *engine*'s dispatched *step* (from *start* to ``engine.clock``) to the span and
        wait (``yield from``) while the span lands its batches and dispatches the next: returns
        when a turn of the engine's loop does not dispatch one, with False (the loop carries on)
        or the event to wait on (:meth:`SpanSteps.commit_and_dispatch`)."""
        env = self.env
        now = env.now
        park = env.event()
        self._add(Batch(engine, step, start, now + max(0.0, engine.clock - now), self._order, park))
        if self._process is None:
            self._process = env.process(self._run())
        elif self._joined is not None and not self._joined.triggered:
            self._joined.succeed()
        return (yield park)

    def _add(self, batch: Batch) -> None:
        """Put *batch*, dispatched last, in its place: last, unless it ends before another."""
        self._order += 1
        batches = self._batches
        if batches and batch.due < batches[-1].due:
            bisect.insort(batches, batch, key=lambda b: (b.due, b.order))
        else:
            batches.append(batch)

    # -- the span's process -------------------------------------------------------------

    def _run(self) -> Generator[Any, Any, None]:
        """Land the batches in order, ahead of the clock while nothing can come between and
        landing them reports nothing, else at their end; wake an engine's loop when its turn
        dispatches nothing."""
        env = self.env
        timers = self.timers
        batches = self._batches
        peers = self.peers
        limit = self.limit
        known = None            # whether the head is quiet, as _run_ahead just found
        # SimPy 4's own queue and clock (timers.plain_simpy): read directly, as its ``now``
        # and ``peek`` read them, a call fewer each (asked at every turn)
        plain = timers.plain
        queue: list = env._queue if plain else []
        while True:
            if not batches:
                self._joined = env.event()
                yield self._joined
                self._joined = None
                continue
            head = batches[0]
            due = head.due
            now = env._now if plain else env.now
            engine = head.engine
            if known is None:
                quiet = head.group_only and engine.quiet_batch()
            else:
                quiet = known
                known = None
            if quiet or due > now:
                peek = (queue[0][0] if queue else INF) if plain else env.peek()
                ahead = due < peek and due <= limit and not peers.waiting_on_change
                if quiet and ahead:
                    # (a batch due now as well: nobody waits for its end, see _land)
                    last, known = self._run_ahead(peek)
                    if peek > limit and batches[0].due > limit:
                        # the run stops before anything else happens: its clock ends, as with
                        # one event per batch, at the end of the last batch landed
                        known = None
                        yield from self._sleep_until(last)
                    continue
            if due > now:
                delay = due - now           # (delay_to(now, due), its usual first try inlined)
                if now + delay != due:
                    delay = delay_to(now, due)
                if ahead and delay is not None and engine.lands_unseen(head.step):
                    # nothing happens before it ends, and landing it reports nothing: landed
                    # now, the engine's turn taken (its loop, if woken, wakes at the end)
                    del batches[0]
                    back = engine.commit_and_dispatch(head)
                    if back is None:
                        self._requeue(head, engine.clock)
                        if peek > limit and batches[0].due > limit:
                            yield from self._sleep_until(due)     # (as after _run_ahead)
                    else:
                        self._hand_back(head, delay, back)
                    continue
                # something comes first: land it (or take its engine's turn) when it ends
                if delay is None:           # no delay reaches it from now: half way first
                    yield timers.timeout((due - now) / 2)   # (from there, due − now is exact)
                else:
                    yield timers.timeout(delay)
                continue
            if quiet:
                self._land(head)
                continue
            # landed here at its end, as its engine's loop would, and the engine's next
            # batch dispatched (else the loop is woken to carry on)
            del batches[0]
            back = engine.commit_and_dispatch(head)
            if back is None:
                self._requeue(head, engine.clock)
            else:
                self._hand_back(head, 0.0, back)

    def _sleep_until(self, t: float):
        """Sleep (``yield from``) until exactly *t*."""
        env = self.env
        while env.now < t:
            delay = delay_to(env.now, t)
            yield self.timers.timeout(delay if delay is not None else (t - env.now) / 2)

    def _run_ahead(self, peek: float) -> tuple[float, bool]:
        """Land quiet batches ahead of the clock while they end before *peek*, the next
        scheduled event (and within the run's limit): until then nothing else happens, so the
        replica's requests stay as they are and no engine waits for blocks — of what makes a
        batch quiet only :meth:`SpanSteps.next_step_quiet` changes from step to step. Returns
        the end of the last batch landed, and whether the head is quiet now.

        The landings are made by :meth:`_run_ahead_lanes` (the compiled loop, where
        :attr:`LANES` and the engines share one KV pool and keep no steps table) or by
        :meth:`_run_ahead_each`. What the landings share is held in locals and handed back when the run ends, the
        arithmetic unchanged: the stage pipeline's clocks (:meth:`StagePipeline.turn`, inlined
        for two stages), the groups' inter-token gaps (binned at the end, in landing order,
        :meth:`GapHistogram.add_uniform_each`) and, unless steps are recorded or a batch may
        begin in the warm-up, the step sums (:meth:`ServingMetrics.step`'s)."""
        batches = self._batches
        batches[0].alone = True         # (the caller's head is quiet)
        fresh = False
        for i in range(1, len(batches)):
            # quiet landings leave every engine's group as it is (and the others' batches in
            # flight wait for their end): the head is quiet unless one of these is false
            b = batches[i]
            b.alone = alone = b.group_only and b.engine.group_alone()
            if alone and b.engine._fresh:
                fresh = True
        limit = self.limit
        horizon = peek if peek <= limit else math.nextafter(limit, math.inf)   # due < horizon: may land
        if (self.LANES and self.peers.shares_pool and not fresh and not batches[0].engine._fresh
                and batches[0].engine.metrics.steps is None):
            return self._run_ahead_lanes(horizon)
        return self._run_ahead_each(horizon, batches[0].due)

    def _run_ahead_lanes(self, horizon: float) -> tuple[float, bool]:
        """:meth:`_run_ahead`'s landings by :func:`~labsim_vllm.quiet_batches.land_quiet_batches`
        (compiled with this class) on a copy of the batches' and engines'
        state, handed back when it stops: where the engines share one KV pool, keep no steps
        table and none of the groups has fresh members to count in its next gap. A step that
        starts in the warm-up (its sums may not count) is landed by :meth:`_run_ahead_each`."""
        batches = self._batches
        engine = batches[0].engine
        metrics = engine.metrics
        pipeline = engine.pipeline
        assert pipeline is not None                 # (engines of a pipeline-parallel replica)
        peers = self.peers
        cpu_free, stage_free, until = pipeline.clocks()
        warm_up = metrics.warm_up
        num_steps, busy_s, flops, nbytes, kv_s, kv_peak = metrics.step_sums()
        run = QuietRun(horizon, engine.pool.num_free, peers.kv_blocks_used(), self._order,
                       cpu_free, stage_free, until, warm_up if warm_up > 0.0 else -math.inf,
                       num_steps, busy_s, flops, nbytes, kv_s, kv_peak, batches[0].due)
        lanes = []
        for b in batches:
            e = b.engine
            if b.alone:
                lanes.append(QuietLane(b, b.due, b.order, b.start, e.clock, e.G, e._fin, e._cnt, True,
                                       e._nD, e._S, e._nW, e._g_end, b.step.decode_ctx, b.cpu,
                                       b.terms, b.table if b.table is not None else [], b.exact))
            else:                           # (never landed here: its state is not read)
                lanes.append(QuietLane(b, b.due, b.order, b.start, e.clock, 0, {}, [0], False,
                                       0, 0, 0, 0.0, 0, 0.0, NO_TERMS, [], 0))
        while True:
            why = land_quiet_batches(run, lanes)
            if why != PRICE_MISSING:
                break
            # the head's next step priced as the loop prices it (its group one step further)
            lane = lanes[0]
            b = lane.batch
            b.engine.G = G = lane.G + 1
            lane.next_price = b.gpu_seconds(lane.context + lane.decodes * G)
        i = 0
        for lane in lanes:
            batches[i] = b = lane.batch     # (in the lanes' order)
            i += 1
            if lane.order != b.order:       # (landed: the others stay as they were)
                e = b.engine
                b.due = lane.due
                b.order = lane.order
                b.start = lane.start
                b.step.decode_ctx = lane.step_context
                e.clock = lane.end
                e.G = lane.G
                e._g_end = lane.last_end
        pipeline.set_clocks(run.cpu_free, run.stage_free, run.busy_until)
        metrics.set_step_sums(run.num_steps, run.busy_s, run.flops, run.nbytes, run.kv_s, run.kv_peak)
        if run.gaps:
            metrics.itl.add_uniform_each(run.gaps, run.widths)
        if run.taken:
            engine.pool.allocate(run.taken)
        self._order = run.order
        if why == LAND_ELSEWHERE:
            return self._run_ahead_each(horizon, run.last)
        return run.last, run.quiet

    def _run_ahead_each(self, horizon: float, last: float) -> tuple[float, bool]:
        """:meth:`_run_ahead`'s landings, one by one in Python (any replica), the head quiet
        and due before *horizon*; *last*: the due time of the last batch landed so far."""
        batches = self._batches
        peers = self.peers
        used = peers.kv_blocks_used()
        order = self._order
        if peers.shares_pool:
            # the engines' blocks come from one pool, taken at the end all at once
            pool = batches[0].engine.pool
            free = pool.num_free
            taken = 0
        else:
            pool = None
        # what the landings share: the engines' metrics and stage pipeline
        engine = batches[0].engine
        metrics = engine.metrics
        itl = metrics.itl
        gaps: list = []                 # the groups' gaps and streams, binned at the end
        widths: list = []
        # the step sums in locals unless rows are recorded (a batch whose busy time begins in
        # the warm-up, rare, is recorded as ever)
        sums = metrics.steps is None
        # (the replica's queues: only the rows show them, and they stay as they are)
        running, waiting = NO_ROW_QUEUES if sums else peers.queue_lengths()
        warm_up = metrics.warm_up
        # without a warm-up every batch's busy time counts (it begins at start + duration −
        # busy, rounded, and that is ≥ 0 when start is and 0 ≤ busy ≤ duration)
        past = sums and warm_up <= 0.0
        if sums:
            num_steps, busy_s, flops, nbytes, kv_s, kv_peak = metrics.step_sums()
        pipeline = engine.pipeline
        assert pipeline is not None                 # (engines of a pipeline-parallel replica)
        two = pipeline.stages == 2
        if two:
            cpu_free, (free0, free1), until = pipeline.clocks()
        while True:
            head = batches[0]
            due = head.due
            engine = head.engine
            if pool is None:
                free = engine.pool.num_free
            G = engine.G                    # engine.next_step_quiet(free), inlined
            need = engine._cnt[G % engine.block_size]
            if due >= horizon or not head.alone or G in engine._fin or need > free:
                quiet = head.alone and G not in engine._fin and need <= free
                break
            del batches[0]
            # engine.land_and_dispatch(head, running, waiting, used), inlined: the quiet
            # batch landed at its end (engine.clock), the group alone dispatched next
            start = head.start
            end = engine.clock
            nD = engine._nD
            if engine._fresh:
                itl.add_uniform_each(gaps, widths)      # (in landing order)
                gaps, widths = [], []
                engine._group_gaps(end, engine._g_end)
            else:
                gaps.append(end - engine._g_end)
                widths.append(engine._nW)
            engine._g_end = end
            engine.G = G + 1
            step = head.step
            ctx = step.decode_ctx
            step.decode_ctx = nxt = engine._S + nD * (G + 1)
            head.start = end
            try:                            # head.gpu_seconds(nxt), inlined for a hit (the
                gpu = head.table[nxt]       # type: ignore[index]  # table holds prices from nD on: None below)
            except (TypeError, IndexError):     # (no table, or none that long yet)
                gpu = None
            if gpu is None:
                gpu = head.gpu_seconds(nxt)
            if two:
                # busy, engine.clock = pipeline.turn(start, end, head.cpu, gpu), inlined
                busy = end - (start if start > until else until)
                if busy < 0.0:
                    busy = 0.0
                if end > until:
                    until = end
                t = (end if end > cpu_free else cpu_free) + head.cpu
                cpu_free = t
                per = gpu / 2
                if free0 > t:
                    t = free0
                t += per
                free0 = t
                if free1 > t:
                    t = free1
                t += per
                free1 = engine.clock = clock = t
            else:
                busy, clock = pipeline.turn(start, end, head.cpu, gpu)
                engine.clock = clock
            p, a, l, s, h, w, k, n = head.work
            duration = end - start
            if past or sums and (start if busy >= duration else start + duration - busy) >= warm_up:
                # metrics.step(index, start, duration, 1, nD, 0, nD, running, waiting, used, flops,
                # bytes, used * duration, busy), inlined: its sums (busy time past the warm-up)
                num_steps += 1
                if busy < duration:
                    kv_s += used * duration * busy / duration
                    busy_s += busy
                else:
                    kv_s += used * duration
                    busy_s += duration
                flops += (p + a * ctx) * l / s + h
                nbytes += w + k * ctx + n
                if used > kv_peak:
                    kv_peak = used
            else:
                if sums:                # (the sums handed over, and taken back)
                    metrics.set_step_sums(num_steps, busy_s, flops, nbytes, kv_s, kv_peak)
                metrics.step(engine.index, start, duration, 1, nD, 0, nD, running, waiting, used,
                       (p + a * ctx) * l / s + h, w + k * ctx + n, used * duration, busy)
                if sums:
                    num_steps, busy_s, flops, nbytes, kv_s, kv_peak = metrics.step_sums()
            if need:
                if pool is None:
                    engine.pool.allocate(need)
                    used = peers.kv_blocks_used()
                else:
                    taken += need
                    free -= need
                    used += need
            # _requeue, inlined: due when the engine loop's timeout, from this batch's
            # dispatch (its previous end, *due*), would fire; last unless it ends earlier
            d = clock - due
            head.due = end = due + (d if d > 0.0 else 0.0)
            head.order = order
            order += 1
            if batches and end < batches[-1].due:
                bisect.insort(batches, head, key=lambda b: (b.due, b.order))
            else:
                batches.append(head)
            last = due
        if gaps:
            itl.add_uniform_each(gaps, widths)
        if sums:
            metrics.set_step_sums(num_steps, busy_s, flops, nbytes, kv_s, kv_peak)
        if two:
            pipeline.set_clocks(cpu_free, (free0, free1), until)
        if pool is not None and taken:
            pool.allocate(taken)
        self._order = order
        return last, quiet

    def _land(self, batch: Batch) -> None:
        """Land the quiet head *batch* at its end, now, and dispatch its engine's next."""
        del self._batches[0]
        engine = batch.engine
        running, waiting = self.peers.queue_lengths() if engine.metrics.steps is not None else NO_ROW_QUEUES
        need = engine.land_and_dispatch(batch, running, waiting, self.peers.kv_blocks_used())
        if need:
            engine.pool.allocate(need)
        self.peers.batch_ended()
        self._requeue(batch, engine.clock)

    def _requeue(self, batch: Batch, end: float) -> None:
        """Queue *batch*, dispatched when its last step ended (at ``batch.due``) and ending at
        *end*: due when the engine loop's timeout, from that instant, would fire."""
        due = batch.due
        d = end - due
        batch.due = end = due + (d if d > 0.0 else 0.0)      # (max(0.0, d), as the loop's timeout)
        batch.order = order = self._order
        self._order = order + 1                  # _add, inlined
        batches = self._batches
        if batches and end < batches[-1].due:
            bisect.insort(batches, batch, key=lambda b: (b.due, b.order))
        else:
            batches.append(batch)

    def _hand_back(self, batch: Batch, delay: float, value) -> None:
        """Wake *batch*'s engine *delay* seconds from now (``Event.succeed`` with a delay, as
        SimPy's ``Timeout`` schedules) with *value*, what its loop does next
        (:meth:`SpanSteps.commit_and_dispatch`)."""
        park = batch.park
        park._ok = True
        park._value = value
        self.env.schedule(park, delay=delay)


__all__ = ["Batch", "PipelineSpan", "SpanSteps", "delay_to"]

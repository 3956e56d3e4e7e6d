"""Joint fast-forward of a pipeline-parallel replica's engines: their decode batches without events.

Under pipeline parallelism P engines (one per batch in flight) step their own
batches through one :class:`~labsim_llm.engine.pipeline.StagePipeline`, each
batch an event, and each engine's batch ends cut the others' runs of identical
steps, so :mod:`labsim_vllm.fast_forward` cannot skip one engine's steps alone.
When every engine is a decode group alone with a batch in flight — nothing
waiting, nobody outside a group, no output held back — what happens next is
fixed until a request arrives: batches end in the order they were dispatched
(FIFO stages), each engine commits its batch at its end and dispatches the next
one of the same members, whose KV blocks, context and price follow from the
group's aggregates, until a member finishes or the KV cache runs short.

The engine about to dispatch such a batch (the *leader*) plans those batches
(:meth:`PipelineSpan._plan`: when each ends, on a copy of the pipeline) and
sleeps until the last one planned, or until a request arrives; the others'
processes park when their batch in flight ends (:meth:`PipelineSpan._park`).
It then applies, in the order the events would have run, every batch that ended
before it woke: the same commits, allocations, pipeline dispatches, steps rows
and inter-token gaps as one event per batch, computed by the same arithmetic.
Then each engine goes on with the batch it has in flight. A batch whose commit
would finish a request, or whose successor would need blocks the cache lacks,
is left to its engine's own event. On a replica alone, every output — requests,
steps and summary — is byte-identical to one event per batch (tested); beside
other replicas, the steps rows and summary sums of the batches applied late
can interleave with theirs in another order (as with single-engine spans).

:class:`PipelineSpan` is a part of :class:`labsim_vllm.scheduler.Replica`.
"""

from __future__ import annotations

import heapq
from collections import deque

from labsim_vllm.seq import MAX_SPAN, Step


#: fewest batch ends a joint span must plan at its start to be taken (it costs an event per engine)
MIN_EVENTS = 3


def _clock(engine) -> float:
    return engine.clock


def _flight(engine) -> tuple:
    """(decode context, start) of *engine*'s batch in flight, a step of its group alone."""
    step, start = engine._flight
    return step.decode_ctx, start


class _Span:
    """One joint span: its engines, the batches planned, and the state of the plan."""

    __slots__ = ("engines", "leader", "events", "head", "queue", "sim", "free", "rows", "done",
                 "unparked", "stopped", "planned")

    def __init__(self, engines, leader):
        self.engines = engines
        self.leader = leader
        self.events: list = []       # planned batch ends: (engine, end, need, ctx, cpu, gpu, new end)
        self.head = 0                # events applied so far
        self.queue: deque = deque()  # the plan's batches in flight, in dispatch order: (engine, end)
        self.sim = None              # the plan's copy of the pipeline
        self.free: dict = {}         # id(pool) → blocks free in the plan
        self.rows = (0, 0)           # (running, waiting) of the replica while the span lasts
        self.done = None             # fires when the engines take over again
        self.unparked = set()        # engines whose batch in flight at the start is not applied
        self.stopped = False         # the plan met a batch it leaves to its engine
        self.planned = {}            # engine → [group steps scheduled in the plan, constants]


class PipelineSpan:
    """The joint fast-forward of a pipelined replica's engines (a part of the vLLM replica)."""

    def _joint_ready(self) -> bool:
        """Whether every engine of the replica is a decode group alone whose batch in flight is
        one of group steps (this engine's just dispatched), with nothing waiting, and the
        next finish far enough off for a span to be worth its events."""
        engines = self.peers.engines
        room = MAX_SPAN
        for e in engines:
            if (e.waiting or e._special or e._list is not None or e._lag_first or e._lag_done
                    or not e._nD or e._nD > e.max_tokens or e._flight is None):
                return False
            step = e._flight[0]
            if step.entries or not step.group:
                return False
            heap, fin = e._fin_keys, e._fin
            while heap[0] not in fin:
                heapq.heappop(heap)
            if heap[0] - e.G < room:
                room = heap[0] - e.G          # its commits before the one that finishes members
        return room * len(engines) >= MIN_EVENTS and self.gpu_is_alone()

    def _run_joint_span(self):
        """Run a joint span from this engine's dispatch (``yield from``); on return every engine
        has its batch in flight in ``_flight`` (this one's ends at ``self.clock``)."""
        env = self.env
        engines = self.peers.engines
        span = _Span(engines, self)
        span.sim = self.pipeline.fork()
        # the batches in flight end in the order they were dispatched, each after the one
        # before (the stages are first come, first served and take a positive time each)
        span.queue.extend((e, e.clock) for e in sorted(engines, key=_clock))
        for e in engines:
            span.free[id(e.pool)] = e.pool.num_free
            # what the plan needs of each engine: its group steps so far and its constants
            nd = e._nD
            span.planned[e] = [e.G, e._fin, e._cnt, e.block_size, id(e.pool), nd, e._S,
                               e._decode_gpu(nd), e.overhead + e.overhead_per_req * nd]
        self._plan(span, 8)
        if len(span.events) < MIN_EVENTS:
            return False                    # too few to be worth the span's own events
        span.rows = self.peers.queue_lengths()
        span.done = env.event()
        span.unparked = {e for e in engines if e is not self}
        cut = env.event()
        box = [None]
        cut.callbacks.append(lambda _e: box[0].triggered or box[0].succeed())
        for e in engines:
            e._joint = span
            e._arrival = cut
        more = 8
        try:
            while True:
                wake = box[0] = env.event()
                self.gpu_work(max(0.0, span.events[-1][1] - env.now)).callbacks.append(
                    lambda _e, w=wake: w.triggered or w.succeed())
                yield wake
                now = env.now
                if cut.triggered:
                    self._apply(span, now, strict=True)
                    break
                self._apply(span, now, strict=False)
                if span.head < len(span.events) or span.stopped:
                    break
                more *= 2
                if not self._plan(span, more):
                    break
        finally:
            for e in engines:
                e._joint = None
                e._arrival = None
            span.done.succeed()
        return True

    def _plan(self, span: _Span, more: int) -> bool:
        """Plan up to *more* further batch ends; False when none could be planned."""
        events = span.events
        queue = span.queue
        sim = span.sim
        free = span.free
        planned = span.planned
        n0 = len(events)
        limit = MAX_SPAN * len(span.engines)
        stop = min(n0 + more, limit)
        append = events.append
        run = sim.run
        while len(events) < stop:
            e, end = queue[0]
            st = planned[e]
            g, fin, cnt, bs, key, nd, S, price, cpu = st
            if g in fin:
                span.stopped = True          # its commit finishes members: its own event
                break
            need = cnt[g % bs]
            if need > free[key]:
                span.stopped = True          # the batch after it lacks blocks: its own event
                break
            queue.popleft()
            free[key] -= need
            ctx = S + nd * (g + 1)            # _schedule_group's context, cpu as run() has it
            st[0] = g + 1
            gpu = price(ctx)
            new_end = run(end, cpu, gpu)
            append((e, end, need, ctx, cpu, gpu, new_end))
            queue.append((e, new_end))
        else:
            if len(events) >= limit:
                span.stopped = True
        return len(events) > n0

    def _apply(self, span: _Span, now: float, strict: bool) -> None:
        """Apply the planned batches that ended before *now* (at or before it if not *strict*),
        in order: each engine commits its batch and dispatches the next, as its events would
        (:meth:`_commit` of a step of the group alone, then ``_schedule_group``'s fast case
        and ``run``'s dispatch, with the same arithmetic in the same order)."""
        events = span.events
        i = span.head
        n = len(events)
        unparked = span.unparked
        j = i                            # the events to apply: i .. j − 1
        while j < n:
            e, end = events[j][0], events[j][1]
            if end > now or (strict and end == now) or e in unparked:
                break
            j += 1
        if j == i:
            return
        running, waiting = span.rows
        peers = self.peers
        pipeline = self.pipeline
        busy = pipeline.busy
        # the plan's pipeline ran exactly these dispatches when it applies every planned one
        dispatch = None if j == n else pipeline.run
        used = peers.kv_blocks_used()
        itl = self.metrics.itl
        gaps = []                        # (gap, warm members) of the usual commits, in order
        taken: dict = {}                 # pool → blocks the applied steps take (one allocate
        moved = {}                       # takes the same blocks as several); engine → batch
        for i in range(i, j):
            e, end, need, ctx, cpu, gpu, new_end = events[i]
            m = moved.get(e)
            if m is None:
                step_ctx, start = _flight(e)
            else:
                step_ctx, start = m[0], m[1]
            nd = e._nD
            # commit: _commit_group's inter-token gaps and _record's row (nobody finishes)
            if e._fresh:
                if gaps:
                    itl.add_uniform_each(gaps)
                    gaps = []
                e._group_gaps(end, e._g_end)
            else:
                gaps.append((end - e._g_end, e._nW))
            e._g_end = end
            flops, nbytes = e.pricer.work((), nd, step_ctx)
            e.metrics.step(e.index, start, end - start, 1, nd, 0, nd, running, waiting, used,
                           flops, nbytes, used * (end - start), busy(start, end))
            # the next step: its members' new blocks, then its dispatch
            if need:
                pool = e.pool
                taken[pool] = taken.get(pool, 0) + need
                used += need
            e.G += 1
            if dispatch is not None:
                dispatch(end, cpu, gpu)
            moved[e] = (ctx, end, new_end)
        span.head = j
        if gaps:
            itl.add_uniform_each(gaps)
        if dispatch is None:
            pipeline.follow(span.sim)
        for pool, blocks in taken.items():
            pool.allocate(blocks)
        for e, (ctx, start, new_end) in moved.items():
            e._flight = (Step([], False, e._nD, ctx), start)
            e.clock = new_end
        peers.batch_ended()

    def _decode_gpu(self, b: int):
        """``f(ctx)`` = the pricer's ``step_time((), b, ctx)``, bit for bit (its per-batch decode
        pricer when it has one): the GPU seconds of a batch of *b* decodes under PP."""
        make = getattr(self.pricer, "decode_step_fn", None)
        if make is None:
            step_time = self.pricer.step_time
            return lambda ctx: step_time((), b, ctx)
        return make(b)

    def _park(self):
        """Wait (``yield from``) while a joint span applies this engine's batches."""
        span = self._joint
        span.unparked.discard(self)
        yield span.done


__all__ = ["PipelineSpan"]

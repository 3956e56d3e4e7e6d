"""Landing a pipeline-parallel vLLM replica's quiet batches in one loop (:func:`land_quiet_batches`).

:class:`~labsim_vllm.pipeline_span.PipelineSpan` hands a run of quiet decode-only batches
(:mod:`labsim_vllm.pipeline_span`) to :func:`land_quiet_batches` on a copy of the engines' and
batches' state (:class:`QuietLane`, :class:`QuietRun`) and takes it back when the loop stops.
The loop does the arithmetic of one event per batch, operation for operation. It belongs to
the replica's group of compiled twins (:mod:`labsim_vllm.native`), so that the span builds and
reads the copies as compiled objects; in pure Python the span lands the batches one by one
instead (``PipelineSpan.LANES``), and the outputs are the same.
"""

from __future__ import annotations

from typing import Any


class QuietLane:
    """One engine of a pipeline-parallel replica and its batch in flight, the decode group
    alone, as :func:`land_quiet_batches` reads and moves them (a copy of the engine's state,
    handed back by its caller).

    The batch runs from *start* to *end* (the engine's clock) and is due at *due*, dispatched
    *order*-th. The engine's group is at step *G*; *finishing* holds the steps at which a
    member finishes (only its keys are read), ``counts[G % len(counts)]`` the KV blocks
    the step after *G* needs. Its *decodes* members with *context* tokens at step 0 (each step
    adds *decodes*) have *widths* of them counted in the inter-token gaps, the last of which
    ended at *last_end*; the batch in flight has *step_context*. *cpu* is a step's engine-core seconds, *terms* those of its FLOPs
    and bytes (``StepPricer.decode_work_terms``, ``float()`` of each), *prices* its GPU seconds by context (None
    where not priced yet) and *context_limit* the last context whose step the loop may work
    out in floating point with the bits of Python's integer arithmetic. *alone*: whether
    the group runs alone (nobody waits or runs outside it). *batch* is the caller's own.
    """

    def __init__(self, batch: Any, due: float, order: int, start: float, end: float,
                 G: int, finishing: dict, counts: list[int], alone: bool, decodes: int,
                 context: int, widths: int, last_end: float, step_context: int, cpu: float,
                 terms: tuple[float, float, float, float, float, float, float, float],
                 prices: list, context_limit: int) -> None:
        self.batch = batch
        self.due = due
        self.order = order
        self.start = start
        self.end = end
        self.G = G
        self.finishing = finishing
        self.counts = counts
        self.alone = alone
        self.decodes = decodes
        self.context = context
        self.widths = widths
        self.last_end = last_end
        self.step_context = step_context
        self.cpu = cpu
        self.p, self.a, self.l, self.s, self.h, self.w, self.k, self.n = terms
        self.prices = prices
        self.context_limit = context_limit
        #: the GPU seconds of the step after the next landing, when its caller priced it
        #: (:data:`PRICE_MISSING`): used once
        self.next_price = -1.0


class QuietRun:
    """What the landings of :func:`land_quiet_batches` share, handed back by its caller: the
    pool's *free* blocks, the replica's *used* ones and those *taken* so far, the next
    dispatch *order*, the stage pipeline's clocks (``StagePipeline.clocks``: *cpu_free*, the
    stages' *stage_free*, *busy_until*), the step sums of ``ServingMetrics.step`` (every
    landing counts: their steps start at or after *warm_up*), the groups' inter-token *gaps*
    and their *widths* in landing order, *horizon* (a batch due at or after it waits), the due
    time of the *last* batch landed, and whether the head is *quiet* when the landings stop."""

    def __init__(self, horizon: float, free: int, used: int, order: int, cpu_free: float,
                 stage_free: list[float], busy_until: float, warm_up: float, num_steps: int,
                 busy_s: float, flops: float, nbytes: float, kv_s: float, kv_peak: int,
                 last: float) -> None:
        self.horizon = horizon
        self.free = free
        self.used = used
        self.taken = 0
        self.order = order
        self.cpu_free = cpu_free
        self.stage_free = stage_free
        self.busy_until = busy_until
        self.warm_up = warm_up
        self.num_steps = num_steps
        self.busy_s = busy_s
        self.flops = flops
        self.nbytes = nbytes
        self.kv_s = kv_s
        self.kv_peak = kv_peak
        self.gaps: list[float] = []
        self.widths: list[int] = []
        self.last = last
        self.quiet = False


#: :func:`land_quiet_batches`' answers: the head may not land (``run.quiet`` says whether it
#: is quiet); the head's next step is not priced yet; the head's step is one to land another way
LANES_STOP = 0
PRICE_MISSING = 1
LAND_ELSEWHERE = 2


def land_quiet_batches(run: QuietRun, lanes: list[QuietLane]) -> int:
    """Land quiet decode-only batches of a pipeline-parallel replica, in the order of *lanes*
    (by due time, then dispatch order: the head ends first), while the head is due before
    ``run.horizon``, its group runs alone, nobody in it finishes and the next step's KV
    blocks are free. Each landing counts the group's gap, lets the group take its next step
    (its blocks, its context, its price through the stage pipeline's FIFO servers), adds the
    step to the sums and puts the batch back in its place: the arithmetic of one event per
    batch, operation for operation.

    Returns :data:`LANES_STOP`, :data:`PRICE_MISSING` (the caller prices the head's next step
    into ``lanes[0].next_price`` and calls again) or :data:`LAND_ELSEWHERE` (the head's step
    starts before ``run.warm_up`` or passes its lane's ``context_limit``)."""
    horizon = run.horizon
    free = run.free
    used = run.used
    order = run.order
    cpu_free = run.cpu_free
    stage_free = run.stage_free
    stages = len(stage_free)
    two = stages == 2
    f0 = stage_free[0] if two else 0.0
    f1 = stage_free[1] if two else 0.0
    until = run.busy_until
    warm_up = run.warm_up
    num_steps = run.num_steps
    busy_s = run.busy_s
    flops = run.flops
    nbytes = run.nbytes
    kv_s = run.kv_s
    kv_peak = run.kv_peak
    gaps = run.gaps
    widths = run.widths
    taken = run.taken
    last = run.last
    answer = LANES_STOP
    while True:
        head = lanes[0]
        due = head.due
        G = head.G
        counts = head.counts
        need = counts[G % len(counts)]
        if due >= horizon or not head.alone or G in head.finishing or need > free:
            run.quiet = head.alone and G not in head.finishing and need <= free
            break
        start = head.start
        ctx = head.step_context
        if start < warm_up or ctx > head.context_limit:
            answer = LAND_ELSEWHERE
            break
        nxt = head.context + head.decodes * (G + 1)
        gpu = head.next_price
        if gpu < 0.0:
            table = head.prices
            if nxt < len(table):
                got = table[nxt]
                if got is None:
                    answer = PRICE_MISSING
                    break
                gpu = got
            else:
                answer = PRICE_MISSING
                break
        else:
            head.next_price = -1.0
        del lanes[0]
        end = head.end
        gaps.append(end - head.last_end)
        widths.append(head.widths)
        head.last_end = end
        head.G = G + 1
        head.step_context = nxt
        head.start = end
        # StagePipeline.turn(start, end, cpu, gpu): the busy time, then the FIFO servers
        busy = end - (start if start > until else until)
        if busy < 0.0:
            busy = 0.0
        if end > until:
            until = end
        t = (end if end > cpu_free else cpu_free) + head.cpu
        cpu_free = t
        per = gpu / stages
        if two:                             # (the usual two stages, in locals)
            if f0 > t:
                t = f0
            t += per
            f0 = t
            if f1 > t:
                t = f1
            t += per
            f1 = t
        else:
            for i in range(stages):
                f = stage_free[i]
                if f > t:
                    t = f
                t += per
                stage_free[i] = t
        head.end = t
        # ServingMetrics.step's sums (its busy time past the warm-up: start >= warm_up)
        duration = end - start
        num_steps += 1
        if busy < duration:
            kv_s += used * duration * busy / duration
            busy_s += busy
        else:
            kv_s += used * duration
            busy_s += duration
        flops += (head.p + head.a * ctx) * head.l / head.s + head.h
        nbytes += head.w + head.k * ctx + head.n
        if used > kv_peak:
            kv_peak = used
        if need:
            taken += need
            free -= need
            used += need
        # due when the engine loop's timeout from this batch's dispatch (*due*) would fire;
        # last unless it ends earlier (then after every batch due no later)
        d = t - due
        head.due = back = due + (d if d > 0.0 else 0.0)
        head.order = order
        order += 1
        if lanes and back < lanes[len(lanes) - 1].due:
            i = 0
            while lanes[i].due <= back:
                i += 1
            lanes.insert(i, head)
        else:
            lanes.append(head)
        last = due
    if two:
        stage_free[0] = f0
        stage_free[1] = f1
    run.free = free
    run.used = used
    run.order = order
    run.cpu_free = cpu_free
    run.busy_until = until
    run.num_steps = num_steps
    run.busy_s = busy_s
    run.flops = flops
    run.nbytes = nbytes
    run.kv_s = kv_s
    run.kv_peak = kv_peak
    run.taken = taken
    run.last = last
    return answer


__all__ = ["LAND_ELSEWHERE", "LANES_STOP", "PRICE_MISSING", "QuietLane", "QuietRun",
           "land_quiet_batches"]

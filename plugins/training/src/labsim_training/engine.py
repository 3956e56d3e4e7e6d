"""One training iteration as a SimPy timeline: one representative rank per pipeline stage.

Data-parallel replicas and the ranks of a tensor-parallel group do the same work at the same
time, so the iteration is simulated for one rank of each pipeline stage (rank ``(tp 0, dp 0,
stage j)``): a 16,384-GPU job with 16 stages is 16 processes. Each stage runs its micro-batches'
forwards and backwards in Megatron's order (:func:`pipeline_order`: 1F1B, or interleaved 1F1B
with virtual stages); a forward waits for the previous stage's activation and a backward for the
next stage's gradient, each arriving one pipeline hand-off (send/recv on the topology) after the
producer finished. Each stage has a communication stream (a SimPy resource) on which the
data-parallel collectives run in order, overlapping with its compute:

- gradient reduction (all-reduce, or reduce-scatter when gradients or optimizer states are
  sharded) layer by layer during the last micro-batch's backward (``overlap_grad_reduce``),
  during every micro-batch's backward (ZeRO-2/3, FSDP), or all at once after the last backward;
- parameter all-gathers before each layer's forward and backward (ZeRO-3, FSDP full_shard),
  issued ahead (prefetch), which the layer's compute waits for.

When every stage's gradients are reduced (a global barrier: the gradient-norm all-reduce), the
optimizer step runs (memory-bound), followed by the all-gather of the updated weights where the
optimizer is sharded but the weights are not (unless hidden behind the next forward).

Every interval of the critical stage (the last to finish its gradients) is attributed to one of
compute, exposed TP / PP / DP communication, pipeline bubble or optimizer, so the breakdown sums
to the iteration time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from labsim_training.costs import Piece

#: what a timeline row's ``kind`` can be, on the ``compute`` or the ``comm`` stream
TIMELINE_KINDS = ("forward", "backward", "recompute", "optimizer", "bubble",  # compute stream
                  "tp", "cp", "ep", "pp", "dp", "param_gather")              # comm stream


def pipeline_order(stage: int, p: int, m: int, v: int = 1, schedule: str = "1f1b") -> list[tuple[str, int, int]]:
    """Stage *stage*'s operations ``(F|B, micro-batch, model chunk)`` in Megatron's 1F1B order
    (interleaved when *v* > 1: ``forward_backward_pipelining_with_interleaving``), or GPipe's
    (every forward, then every backward: the same bubble, but all *m* micro-batches' activations
    held at once)."""
    if schedule == "gpipe":
        return [("F", k, 0) for k in range(m)] + [("B", k, 0) for k in range(m)]
    total = m * v
    if v == 1:
        warmup = min(p - stage - 1, m)
    else:
        warmup = min((p - stage - 1) * 2 + (v - 1) * p, total)

    def chunk(k: int, forward: bool) -> int:
        c = (k % (p * v)) // p
        return c if forward else v - 1 - c

    def micro(k: int) -> int:
        return (k // (p * v)) * p + k % p if v > 1 else k

    ops = [("F", micro(k), chunk(k, True)) for k in range(warmup)]
    steady = total - warmup
    for i in range(steady):
        k = warmup + i
        ops.append(("F", micro(k), chunk(k, True)))
        ops.append(("B", micro(i), chunk(i, False)))
    for i in range(steady, total):
        ops.append(("B", micro(i), chunk(i, False)))
    return ops


def peak_in_flight(stage: int, p: int, m: int, v: int = 1, schedule: str = "1f1b") -> int:
    """Most micro-batch chunks whose activations stage *stage* holds at once."""
    live = peak = 0
    for kind, _, _ in pipeline_order(stage, p, m, v, schedule):
        live += 1 if kind == "F" else -1
        peak = max(peak, live)
    return peak


@dataclass
class StageAccount:
    """Seconds of one stage's iteration by cause."""

    compute: float = 0.0
    tp: float = 0.0
    cp: float = 0.0
    ep: float = 0.0
    pp: float = 0.0
    dp: float = 0.0
    bubble: float = 0.0
    optimizer: float = 0.0
    membound: float = 0.0
    flops: float = 0.0
    done: float = 0.0
    busy_comm: float = 0.0

    def total(self) -> float:
        return (self.compute + self.tp + self.cp + self.ep + self.pp + self.dp + self.bubble
                + self.optimizer)


@dataclass
class IterationResult:
    """One iteration: its time, the critical stage's breakdown, every stage's account."""

    seconds: float
    critical_stage: int
    breakdown: dict
    stages: list
    rows: list = field(default_factory=list)


@dataclass
class Chunk:
    layers: int
    fwd: Piece
    bwd: Piece
    params: float
    expert_params: float = 0.0  # of params: the experts', reduced over the expert-data-parallel group


class Iteration:
    """The SimPy processes of one iteration (see the module docs).

    :param execute: ``execute(seconds)`` → an event; the framework's GPUs' execution point.
    :param record: keep the timeline of each stage's representative rank: rows ``(stage,
        stream, kind, micro-batch, start, end)`` (see :data:`TIMELINE_KINDS`).
    """

    def __init__(self, env, costs, layout, sharding, execute=None, record: bool = False, links=None):
        self.env, self.costs, self.layout, self.sharding = env, costs, layout, sharding
        self.links = links
        self.execute = execute or env.timeout
        # on GPUs shared with other tenants, each piece says how memory-bound it is (MPS splits the
        # GPU by it); exclusive GPUs take plain timeouts
        owner = getattr(execute, "__self__", None)
        self.shared = owner is not None and getattr(owner, "exclusive", True) is False
        self.record = record
        p, v = layout.pp, layout.vpp
        self.chunks: list[list[Chunk]] = []
        for j in range(p):
            row = []
            for c in range(v):
                per = layout.layers_of(j, c)
                f, b = costs.chunk(per, first=(j == 0 and c == 0), last=(j == p - 1 and c == v - 1))
                if layout.straggler is not None and layout.straggler[0] == j:
                    f, b = f * layout.straggler[1], b * layout.straggler[1]
                row.append(Chunk(per, f, b, costs.chunk_params(j, c), costs.chunk_expert_params(j, c)))
            self.chunks.append(row)
        self.events: dict = {}
        self.acc = [StageAccount() for _ in range(p)]
        self.rows: list = []  # (stage, stream, kind, micro_batch, start_s, end_s) when recording

    # -- dependencies ---------------------------------------------------------------------------

    def _event(self, key):
        ev = self.events.get(key)
        if ev is None:
            ev = self.events[key] = self.env.event()
        return ev

    def _dep(self, kind, mb, c, j):
        """(event, hand-off seconds) the operation waits for, or (None, 0)."""
        p, v, p2p = self.layout.pp, self.layout.vpp, self.costs.p2p
        if kind == "F":
            if j > 0:
                return self._event(("F", mb, c, j - 1)), p2p[j - 1]
            if c > 0:
                return self._event(("F", mb, c - 1, p - 1)), p2p[p - 1]
            return None, 0.0
        if j < p - 1:
            return self._event(("B", mb, c, j + 1)), p2p[j]
        if c < v - 1:
            return self._event(("B", mb, c + 1, 0)), p2p[p - 1]
        return None, 0.0

    def _signal(self, kind, mb, c, j):
        p, v, p2p = self.layout.pp, self.layout.vpp, self.costs.p2p
        if kind == "F":
            if j == p - 1 and c == v - 1:
                return
            delay = p2p[j]
        else:
            if j == 0 and c == 0:
                return
            delay = p2p[j - 1] if j > 0 else p2p[p - 1]
        ev = self._event((kind, mb, c, j))
        if delay > 0 and self.links is not None:
            sender = j if kind == "F" else (j - 1 if j > 0 else p - 1)
            nbytes, ranks = self.costs.p2p_call[sender]
            if kind == "B":
                ranks = ranks[::-1]
            self.env.process(self._handoff(nbytes, ranks, ev, (sender, mb)))
        elif delay > 0:
            if self.record:
                self.rows.append((j, "comm", "pp", mb, self.env.now, self.env.now + delay))
            self.env.timeout(delay).callbacks.append(lambda _e, ev=ev: ev.succeed())
        else:
            ev.succeed()

    def _handoff(self, nbytes, ranks, ev, tag):
        began = self.env.now
        yield from self.links.collective("send_recv", nbytes, ranks)
        if self.record:
            self.rows.append((tag[0], "comm", "pp", tag[1], began, self.env.now))
        ev.succeed()

    # -- communication stream -------------------------------------------------------------------

    def _comm(self, stream, call, acc, tag):
        op, nbytes, ranks, seconds = call
        with stream.request() as turn:
            yield turn
            began = self.env.now
            if self.links is not None and seconds > 0 and op != "h2d":
                yield from self.links.collective(op, nbytes, ranks)
            else:
                yield self.env.timeout(seconds)
            acc.busy_comm += self.env.now - began
            if self.record and self.env.now > began:
                self.rows.append((tag[0], "comm", tag[1], tag[2], began, self.env.now))

    def _issue(self, stream, call, acc, tag):
        """Queue *call* on the stage's communication stream; *tag* = (stage, kind, micro-batch)."""
        return self.env.process(self._comm(stream, call, acc, tag))

    def _record_op(self, j, kind, mb, c, piece, start):
        """Timeline rows of one forward or backward: its kernels (a full-recompute backward's
        forward again first), then its exposed TP, CP and EP collectives (drawn after the kernels;
        really they interleave layer by layer)."""
        t = start
        if kind == "B" and self.layout.recompute == "full":
            rc = self.chunks[j][c].fwd.compute
            self.rows.append((j, "compute", "recompute", mb, t, t + rc))
            t += rc
            kernels = piece.compute - rc
        else:
            kernels = piece.compute
        self.rows.append((j, "compute", "forward" if kind == "F" else "backward", mb, t, t + kernels))
        t += kernels
        for what, seconds in (("tp", piece.tp), ("cp", piece.cp), ("ep", piece.ep)):
            if seconds > 0:
                self.rows.append((j, "comm", what, mb, t, t + seconds))
                t += seconds

    # -- one stage ------------------------------------------------------------------------------

    def _stage(self, j):
        env, lay, sh, costs = self.env, self.layout, self.sharding, self.costs
        acc = self.acc[j]
        stream = simpy.Resource(env, capacity=1)
        pending = []
        m, dp = lay.num_micro, lay.dp_group
        sharded_dp = dp > 1
        for kind, mb, c in pipeline_order(j, lay.pp, m, lay.vpp, lay.schedule):
            dep, handoff = self._dep(kind, mb, c, j)
            if dep is not None and not dep.triggered:
                t0 = env.now
                yield dep
                waited = env.now - t0
                part = min(waited, handoff)
                acc.pp += part
                acc.bubble += waited - part
                if self.record:
                    self.rows.append((j, "compute", "bubble", mb, t0, env.now))
            chunk = self.chunks[j][c]
            piece = chunk.fwd if kind == "F" else chunk.bwd
            start = env.now
            gather = sharded_dp and sh.params
            reduce_now = sharded_dp and kind == "B" and (
                sh.every_microbatch or (mb == m - 1 and sh.overlap_grad_reduce))
            if not gather and not reduce_now:
                yield self._run(piece)
            else:
                n = max(1, chunk.layers)
                per = piece * (1.0 / n)
                gathers = []
                if gather:
                    ag = costs.dp_call("all_gather", chunk.params / n, 2.0, j, sh.shard_group)
                    h2d = costs.shard_copy_call(chunk.params / n / sh.shards(lay.dp_group)) if sh.offload_params else None
                    gathers = []
                    for _ in range(n):
                        if h2d is not None:  # ZeRO-Infinity: the shard comes up from host memory first
                            self._issue(stream, h2d, acc, (j, "param_gather", mb))
                        gathers.append(self._issue(stream, ag, acc, (j, "param_gather", mb)))
                red = self._reduce_calls(chunk, j, 1.0 / n) if reduce_now else None
                for i in range(n):
                    if gathers and not gathers[i].triggered:
                        t0 = env.now
                        yield gathers[i]
                        acc.dp += env.now - t0
                    yield self._run(per)
                    if reduce_now:
                        pending += [self._issue(stream, call, acc, (j, "dp", mb)) for call in red]
            acc.compute += piece.compute
            acc.tp += piece.tp
            acc.cp += piece.cp
            acc.ep += piece.ep
            acc.membound += piece.membound
            acc.flops += piece.flops
            if self.record:
                self._record_op(j, kind, mb, c, piece, start)
            self._signal(kind, mb, c, j)
        if sharded_dp and not sh.every_microbatch and not sh.overlap_grad_reduce:
            for chunk in self.chunks[j]:
                pending += [self._issue(stream, call, acc, (j, "dp", "")) for call in self._reduce_calls(chunk, j)]
        if pending:
            t0 = env.now
            yield env.all_of(pending)
            acc.dp += env.now - t0
        acc.done = env.now

    def _run(self, piece: Piece):
        """The event of *piece*'s kernels and exposed collectives on the stage's GPUs."""
        if self.shared and piece.seconds > 0:
            return self.execute(piece.seconds, membound=piece.membound / piece.seconds)
        return self.execute(piece.seconds)

    def _reduce_calls(self, chunk: Chunk, j: int, share: float = 1.0) -> list:
        """The gradient collectives of *share* of *chunk*'s parameters on stage *j*: one over the
        DP group, or with hybrid sharding a reduce-scatter in the shard group and an all-reduce
        of the shard across the replicas; a MoE chunk's expert gradients over the ranks that hold
        the same experts."""
        sh, costs, lay = self.sharding, self.costs, self.layout
        params = (chunk.params - chunk.expert_params) * share
        group = sh.shards(lay.dp_group)
        if group >= lay.dp_group:
            calls = [costs.dp_call(sh.reduce_op, params, sh.grad_comm_bytes, j)]
        else:
            calls = [costs.dp_call("reduce_scatter", params, sh.grad_comm_bytes, j, group),
                     costs.dp_call("all_reduce", params / group, sh.grad_comm_bytes, j, -group)]
        if chunk.expert_params and lay.dp_group > lay.ep:
            calls.append(costs.expert_dp_call(sh.reduce_op, chunk.expert_params * share,
                                              sh.grad_comm_bytes, j))
        return calls

    def run(self):
        """SimPy generator: one iteration; returns an :class:`IterationResult`."""
        env, lay, sh, costs = self.env, self.layout, self.sharding, self.costs
        begin = env.now
        procs = [env.process(self._stage(j)) for j in range(lay.pp)]
        yield env.all_of(procs)
        barrier = env.now
        tails = []
        for j in range(lay.pp):
            experts = costs.stage_expert_params(j)
            params = costs.stage_params(j) - experts
            local = (params / (sh.shards(lay.dp_group) if sh.optimizer else 1)
                     + experts / (lay.dp_group // lay.ep if sh.optimizer else 1))
            opt = costs.optimizer_time(local, sh.grad_bytes, sh.offload_host_bw)
            ag = 0.0
            if sh.gather_after_step and lay.dp_group > 1 and not sh.overlap_param_gather:
                ag = costs.dp_call("all_gather", params, 2.0, j, sh.shard_group)[3]
                if experts and lay.dp_group > lay.ep:
                    ag += costs.expert_dp_call("all_gather", experts, 2.0, j)[3]
            tails.append((opt, ag))
        tail = max(o + a for o, a in tails)
        if self.record:
            for j, (opt, ag) in enumerate(tails):
                self.rows.append((j, "compute", "optimizer", "", barrier, barrier + opt))
                if ag > 0:
                    self.rows.append((j, "comm", "param_gather", "", barrier + opt, barrier + opt + ag))
        yield self.execute(tail)
        seconds = env.now - begin
        done = [a.done - begin for a in self.acc]
        r = max(range(lay.pp), key=lambda k: (done[k], -k))
        acc = self.acc[r]
        opt, ag = tails[r]
        acc.optimizer += opt
        acc.dp += ag
        acc.bubble += (barrier - self.acc[r].done) + (tail - opt - ag)
        breakdown = {
            "compute": acc.compute,
            "exposed_communication": {"tp": acc.tp, **({"cp": acc.cp} if lay.cp > 1 else {}),
                                      **({"ep": acc.ep} if lay.ep > 1 else {}),
                                      "pp": acc.pp, "dp": acc.dp},
            "pipeline_bubble": acc.bubble,
            "optimizer": acc.optimizer,
        }
        return IterationResult(seconds, r, breakdown, self.acc, self.rows)


def simulate_iteration(env, costs, layout, sharding, execute=None, record=False) -> IterationResult:
    """Run one iteration in *env* to completion (a fresh environment is fine) and return it."""
    from labsim_training.network import shared_links

    it = Iteration(env, costs, layout, sharding, execute, record, shared_links(env, costs))
    proc = env.process(it.run())
    env.run(until=proc)
    return proc.value

"""The shell every serving-engine replica shares; an engine adds only its scheduling policy.

A replica is one copy of an engine (``tp × pp`` GPUs) running a step loop as a
SimPy process. Whatever the engine, it accepts requests and wakes its loop,
idles when it has nothing to do, spends GPU time on each step, finishes
requests (statistics, rows, and telling the framework so that closed-loop
clients and conversations send their next turn), looks up and registers
prefix-cache blocks, and lists what is still inside when the run ends.
:class:`ReplicaShell` is that part; a subclass supplies:

``new_seq(request)``
    its own per-request state (a :class:`Seq` subclass);
``has_work()``, ``schedule()``, ``step_seconds(step)``, ``commit(step, start, end)``
    its scheduling policy, for the default loop :meth:`ReplicaShell.run`; an engine with
    its own loop (overlap, fast-forward, pipeline parallelism) overrides :meth:`run` and
    uses :meth:`idle` and :meth:`gpu_work` inside it.

**The GPU seam.** Every second of GPU time a step takes passes through
:meth:`ReplicaShell.gpu_work`, which returns the SimPy event that fires when the
work is done: the replica's GPUs' execution point (:class:`labsim.hardware.GpuSet`), a
plain timeout under exclusive use and the GPUs' sharing mode when frameworks share them;
anything that skips simulated steps (vLLM's fast-forward) first asks
:meth:`ReplicaShell.gpu_is_alone`, or on a shared GPU takes a lease on a run of steps with
:meth:`ReplicaShell.gpu_span`. Sharing is wired there and nowhere else.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from labsim_llm.engine.kv_cache import block_ids
from labsim_llm.engine.timers import Timers


class Seq:
    """A replica's state of one request: the fields the shell reads and writes.

    ``keys``: prefix-cache keys of the prompt's full blocks (made on first lookup);
    ``hashed``: the cached blocks it holds; ``held``: KV blocks it holds;
    ``n_reg``: prompt blocks registered so far; ``dref``: a deferred registration
    (vLLM) or None; ``last_token``: when it last emitted a token; ``warm``: it arrived
    after the warm-up and counts in the statistics.
    """

    __slots__ = ("req", "keys", "hashed", "held", "n_reg", "dref", "last_token", "warm",
                 "admitted", "t_in")

    req: Any                             # the Request
    keys: Sequence[int] | None           # a list, or a range
    hashed: list
    held: int
    n_reg: int
    dref: Any                            # (vLLM's DeferredRegistration)
    last_token: float
    warm: bool
    admitted: bool
    t_in: float

    def __init__(self, req: Any, warm: bool):
        self.req = req
        self.keys = None
        self.hashed = []
        self.held = 0
        self.n_reg = 0
        self.dref = None
        self.last_token = math.nan
        self.warm = warm
        self.admitted = False
        self.t_in = 0.0                          # when it reached the replica


def time_limit(context) -> float:
    """The run's ``simulation.max_simulation_time`` (inf when *context* sets none): the
    engines land no step ahead of the clock that ends later, as the run stops before it."""
    config = getattr(context, "config", None) or {}
    return float((config.get("simulation") or {}).get("max_simulation_time", math.inf))


def replica_gpus(owner, index: int):
    """Replica *index*'s GPUs: its ``tp × pp`` share of the engine's allocation (an empty,
    exclusive set for an owner that allocated none, e.g. in unit tests)."""
    from labsim.hardware import GpuSet

    gpus = getattr(owner, "gpus", None)
    if gpus is None:
        return GpuSet(getattr(owner, "instance_name", ""), [], None)
    cfg = getattr(owner, "cfg", None) or {}
    per = max(1, len(gpus) // max(1, int(cfg.get("num_replicas", 1))))
    return gpus.subset(index * per, (index + 1) * per)


class ReplicaShell:
    """What every serving replica shares (see the module docstring).

    :param owner: the framework (a :class:`~labsim_llm.engine.serving_engine.ServingEngine`:
        its ``context``, ``metrics``, ``frontend`` and ``request_left``).
    :param index: which data-parallel copy this is (written in every row).
    :param pool: its KV cache (a :class:`~labsim_llm.engine.kv_cache.BlockPool`), or None.

    Its attributes are declared with their types below: an engine compiles the shell with its
    own layers (:mod:`labsim.native`, ``"shell"`` in labsim-vllm's and labsim-trtllm's
    ``native.MODULES``), which keeps them in fixed fields.
    """

    owner: Any                       # the framework
    index: int
    env: Any                         # the SimPy environment
    timers: Timers                   # its timers and clock
    time_limit: float
    metrics: Any                     # the framework's ServingMetrics
    warm_up: float
    fe_after: float
    fe_whole: Any                    # output tokens → seconds (the API server's)
    pool: Any                        # the KV cache (a BlockPool), or None
    gpus: Any                        # the replica's GpuSet
    waiting: deque                   # the engine's per-request states, first come first served
    clock: float
    _wake: Any                       # the SimPy event an idle loop waits on, else None
    process: Any                     # the SimPy process of the step loop (None until it starts)

    def __init__(self, owner: Any, index: int, pool: Any = None):
        self.owner = owner
        self.index = index
        self.env = owner.context.env
        self.timers = Timers(self.env)
        #: whether the clock may be read as ``env._now`` (:func:`~labsim_llm.engine.timers.plain_simpy`;
        #: compiled, SimPy's ``now`` property is an interpreted call)
        self.plain_clock: bool = self.timers.plain
        #: the run's time limit: no step ending later is landed ahead of the clock
        self.time_limit = time_limit(owner.context)
        self.metrics = owner.metrics
        self.warm_up = owner.metrics.warm_up
        #: the API server's delay of every streamed token (first and last alike)
        self.fe_after = owner.frontend.after_first_token_s
        #: seconds from the last token to a non-streaming client holding the whole answer
        #: (a front end without ``whole_response_s`` delays it as one streamed token)
        self.fe_whole = getattr(owner.frontend, "whole_response_s", lambda _tokens: self.fe_after)
        self.pool = pool
        #: this replica's GPUs (tp × pp of the engine's), whose execution point runs its work
        self.gpus = replica_gpus(owner, index)
        self.waiting = deque()
        self.clock = 0.0
        self._wake = None
        self.process = None

    # -- the GPU seam -------------------------------------------------------------------

    def gpu_work(self, seconds: float, step=None):
        """The event that fires when *seconds* of this replica's GPU work, asked for now, are done.

        Every piece of a step's GPU time goes through here (one seam for GPU sharing and
        accounting). The event's value is the simulated time the work ended when that is not
        ``now + seconds`` (a shared GPU ran it later), else None: the loops then keep their
        own sum, so outputs stay bit for bit. Under exclusive use (the default) it is a plain
        timeout (a compiled one, :meth:`labsim_llm.engine.timers.Timers.timeout`); on GPUs shared with
        other frameworks their sharing mode runs it.
        """
        gpus = self.gpus
        if gpus.exclusive:
            return self.timers.timeout(seconds)
        return gpus.execute(seconds, self.membound(step) if step is not None else None)

    def membound(self, step) -> float | None:
        """The share of *step*'s GPU time bound by memory bandwidth, from its FLOPs and bytes
        (the cost model's roofline: bytes / bandwidth against FLOPs / peak), for sharing modes
        that split the GPU between concurrent tenants (MPS)."""
        pricer = getattr(self, "pricer", None)
        pricer = getattr(pricer, "eager", pricer)  # TensorRT-LLM's pricer wraps a StepPricer
        chunks = getattr(step, "chunks", None)
        if pricer is None or chunks is None or not hasattr(pricer, "work") or not hasattr(pricer, "device"):
            return None
        flops, nbytes = pricer.work(chunks, getattr(step, "decodes", 0), getattr(step, "decode_ctx", 0))
        device = pricer.device
        peak = (device.peak_flops.get(pricer.dtype) or device.peak_flops.get("bf16")
                or max(device.peak_flops.values()))
        t_c, t_m = flops / peak, nbytes / device.mem_bw
        return t_m / (t_c + t_m) if t_c + t_m > 0 else None

    def gpu_is_alone(self) -> bool:
        """Whether nothing else runs on this replica's GPUs (so steps may be skipped over)."""
        gpus = self.gpus
        return gpus.exclusive or gpus.is_alone()     # (exclusive: alone, and no call)

    def gpu_span(self, num_decodes: int, first_context: int, steps: int):
        """On a shared GPU, a lease on a run of at most *steps* decode-only steps of
        *num_decodes* requests whose contexts are ``first_context + i · num_decodes``, timed by
        the replica (:meth:`labsim.hardware.GpuSet.span`), or None."""
        if self.gpus.exclusive:
            return None
        from types import SimpleNamespace

        def membound_of(i):
            return self.membound(SimpleNamespace(chunks=(), decodes=num_decodes,
                                                 decode_ctx=first_context + num_decodes * i))
        return self.gpus.span(membound_of, steps)

    # -- interface with the framework --------------------------------------------------

    def new_seq(self, req) -> Seq:
        """This engine's state of an arriving request."""
        return Seq(req, req.arrival_s >= self.warm_up)

    def start(self) -> None:
        """Start the step loop."""
        self.process = self.env.process(self.run())

    def submit(self, req) -> None:
        """Queue an admitted request (the framework has checked it can be served) and wake."""
        req.replica = self.index
        seq = self.new_seq(req)
        seq.t_in = self.env._now if self.plain_clock else self.env.now
        self.waiting.append(seq)
        self.wake()

    def wake(self) -> None:
        """Wake the loop if it idles."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def idle(self):
        """Wait (``yield from``) until a request arrives; the clock moves to its arrival."""
        self._wake = self.env.event()
        yield self._wake
        self._wake = None
        self.clock = max(self.clock, self.env._now if self.plain_clock else self.env.now)

    @property
    def outstanding(self) -> int:
        """Requests queued or running here."""
        return len(self.waiting) + len(self.running_seqs())

    def running_seqs(self) -> list:
        """The requests being served (the default loop serves none at a time of its own)."""
        return []

    def pending(self) -> list:
        """Every request still here (the framework reports them ``unfinished`` at the end)."""
        return [s.req for s in self.running_seqs()] + [s.req for s in self.waiting]

    # -- the default step loop ------------------------------------------------------------

    def has_work(self) -> bool:
        """Whether a step can be formed now."""
        return bool(self.waiting) or bool(self.running_seqs())

    def schedule(self):
        """Form the next step (the engine's policy)."""
        raise NotImplementedError(self)

    def step_seconds(self, step) -> float:
        """GPU seconds *step* takes (priced by the engine's cost model)."""
        raise NotImplementedError(self)

    def commit(self, step, start: float, end: float) -> None:
        """Apply *step*'s outputs at *end* (emit tokens with :meth:`emit_token`, finish with
        :meth:`finish`)."""
        raise NotImplementedError(self)

    def run(self):
        """The step loop: idle until there is work, form a step, spend its GPU time, commit."""
        env = self.env
        while True:
            if not self.has_work():
                yield from self.idle()
                continue
            step = self.schedule()
            start = self.clock
            self.clock = start + self.step_seconds(step)
            end = yield self.gpu_work(max(0.0, self.clock - env.now), step)
            if end is not None:
                self.clock = end
            self.commit(step, start, self.clock)

    # -- tokens and finishing ---------------------------------------------------------------

    def emit_token(self, seq: Seq, end: float, first: bool) -> float | None:
        """*seq* emitted a token in the step ending at *end*: its first token's time is set;
        returns the inter-token gap to record (warm requests after the first), else None."""
        gap = None
        if first:
            seq.req.first_token_s = end + self.fe_after
        elif seq.warm:
            gap = end - seq.last_token
        seq.last_token = end
        return gap

    def free_blocks(self, seq: Seq) -> None:
        """Give back every KV block *seq* holds (its deferred registration, if any, with them)."""
        d = seq.dref
        if d is not None:
            seq.dref = None
            if d.state == 0:
                self.pool.free_deferred(d, seq.held - d.n)
                seq.hashed = []
                seq.held = 0
                return
        self.pool.free(seq.hashed, seq.held - len(seq.hashed))
        seq.hashed = []
        seq.held = 0

    def report(self, req, end: float) -> None:
        """*req* finished (its last token out at *end*): record it and tell the framework, which
        tells its listeners (closed-loop clients, conversations' next turns)."""
        req.status = "finished"
        if req.streaming:
            req.finish_s = end + self.fe_after
        else:   # the whole answer in one response: the client's first token comes with the last
            req.finish_s = req.first_token_s = end + self.fe_whole(req.output_tokens)
        self.metrics.request_done(req)
        self.owner.request_left(req)

    # -- the prefix cache -----------------------------------------------------------------

    def cache_hits(self, seq: Seq, tokens: int) -> list:
        """The leading prompt-block keys of *seq* found in the prefix cache, at most all but the
        block of the last of *tokens* (an engine recomputes the last token for its logits)."""
        pool = self.pool
        keys, hits = pool.prompt_hits(seq.keys, seq.req.segments, (tokens - 1) // pool.block_size)
        seq.keys = keys
        return list(keys[:hits]) if hits else []

    def register_prompt(self, seq: Seq, upto: int) -> None:
        """Cache the full prompt blocks covered by the first *upto* tokens of *seq*."""
        keys = seq.keys
        if keys is None:
            seq.keys = keys = block_ids(seq.req.segments, self.pool.block_size)
        full = min(upto // self.pool.block_size, len(keys))
        if seq.n_reg < full:
            d = seq.dref
            if d is not None and d.state == 0:        # still deferred: just count them
                d.n = full
                seq.n_reg = full
                return
            seq.hashed.extend(self.pool.register_many(keys[seq.n_reg:full]))
            seq.n_reg = full

    def output_keys(self, seq: Seq, output_id: int, out: int) -> Sequence[int]:
        """Keys of the full blocks of *seq*'s prompt followed by its *out* generated tokens
        (content id *output_id*): what a conversation's next turn, carrying this answer, hits."""
        return block_ids((*seq.req.segments, (output_id, out)), self.pool.block_size)

    def register_keys(self, seq: Seq, keys) -> None:
        """Cache *keys* (blocks *seq* holds and has computed) unless cached already."""
        seq.hashed.extend(self.pool.register_many(keys))


__all__ = ["ReplicaShell", "Seq", "replica_gpus", "time_limit"]

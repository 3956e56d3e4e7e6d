"""Pipeline parallelism with several batches in flight: when each batch ends, and the busy time.

With ``pipeline_parallel_size`` P a replica's layers are split over P GPUs
(stages) and one batch visits them in turn. Run one batch at a time, every
GPU would idle (P − 1)/P of the time; serving engines therefore keep up to P
batches in flight (vLLM v1's engine core keeps a batch queue of
``max_concurrent_batches`` = P, ``EngineCore.step_with_batch_queue``; vLLM
V0 ran P "virtual engines", one scheduler each). A request is in at most
one batch at a time: its next token needs the previous one.

:class:`StagePipeline` times those batches. Its servers are the engine
core's CPU (scheduling and input preparation, the step's ``cpu`` seconds)
followed by the P GPU stages (the step's device seconds split evenly, as
the layers are); each server takes batches first come, first served. A
batch dispatched later never overtakes an earlier one, so the end of a
batch is known when it is dispatched — no event per stage is needed:

>>> p = StagePipeline(2)
>>> p.run(0.0, cpu=0.001, device=0.010)      # alone: cpu + both stages
0.011
>>> p.run(0.0, cpu=0.001, device=0.010)      # the next batch trails it by one stage
0.016

It also counts the replica's busy time — the union of the batches'
intervals, not their sum, since they overlap (:meth:`~StagePipeline.busy`).

:class:`PipelinedReplica` is what the router sees of such a replica: P
engines, each scheduling its own requests into its own batches, sharing one
KV cache and one :class:`StagePipeline`. A new request goes to the engine
with the fewest requests queued or running (vLLM V0's rule for its virtual
engines, ``LLMEngine.add_request``). vLLM v1 schedules one queue into
whichever batch leaves next; once the pipeline is full that settles into
the same P interleaved sets of requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StagePipeline:
    """FIFO servers — the engine core's CPU, then *stages* GPU stages — shared by the batches
    of one pipeline-parallel replica. (The serving engines compile this module with their
    replicas' layers, ``labsim.native``: its attributes are declared with their types.)"""

    stages: int
    _cpu_free: float
    _free: list[float]
    _busy_until: float

    def __init__(self, stages: int):
        if stages < 1:
            raise ValueError("a pipeline has at least one stage")
        self.stages = int(stages)
        self._cpu_free = 0.0
        self._free = [0.0] * self.stages
        self._busy_until = 0.0

    def run(self, start: float, cpu: float, device: float) -> float:
        """End of a batch dispatched at *start* that needs *cpu* seconds of the engine core,
        then *device* seconds of GPU work split evenly over the stages."""
        t = (start if start > self._cpu_free else self._cpu_free) + cpu
        self._cpu_free = t
        per = device / self.stages
        free = self._free
        for s in range(self.stages):
            if free[s] > t:
                t = free[s]
            t += per
            free[s] = t
        return t

    def turn(self, start: float, end: float, cpu: float, device: float) -> tuple[float, float]:
        """``(busy(start, end), run(end, cpu, device))``: a batch from *start* ends at *end* and
        its engine dispatches the next at once (a decode loop's turn, in one call: the busy
        time inlined, the same arithmetic)."""
        until = self._busy_until
        busy = end - (start if start > until else until)
        if end > until:
            self._busy_until = end
        return (busy if busy > 0.0 else 0.0), self.run(end, cpu, device)

    def clocks(self) -> tuple[float, list[float], float]:
        """``(cpu_free, free, busy_until)``: when the engine core and each stage (a copy) are
        free next, and the end of the busy time counted so far — for a caller that times a
        run of batches with :meth:`turn`'s arithmetic inline (the PP span), then hands them
        back with :meth:`set_clocks`."""
        return self._cpu_free, list(self._free), self._busy_until

    def set_clocks(self, cpu_free: float, free: Sequence[float], busy_until: float) -> None:
        """Set what :meth:`clocks` reads (after a run of batches timed inline)."""
        self._cpu_free = cpu_free
        self._free[:] = free
        self._busy_until = busy_until

    def busy(self, start: float, end: float) -> float:
        """Seconds of the batch interval [*start*, *end*] no earlier batch covered (batches
        are reported in the order they end, which is the order they were dispatched)."""
        begin = start if start > self._busy_until else self._busy_until
        if end > self._busy_until:
            self._busy_until = end
        return end - begin if end > begin else 0.0


class PipelinedReplica:
    """One pipeline-parallel replica as the router sees it: *engines* (one per batch in flight)
    that share a :class:`StagePipeline` and one KV cache (or split one among them).

    Each engine needs ``index``, ``outstanding``, ``start()``, ``submit(request)``,
    ``pending()``, ``waiting`` (its queue) and ``pool`` (its KV cache), the last two for the
    replica-wide figures of :meth:`queue_lengths` and :meth:`kv_blocks_used`. An engine that
    has work but cannot form a batch because the others hold the KV blocks waits on
    :meth:`changed`, which fires after any engine's batch ends.
    """

    env: Any                    # the SimPy environment
    _engines: list
    _pools: list
    _pool: Any                  # the one KV cache every engine shares, else None
    shares_pool: bool
    _changed: Any               # the event :meth:`changed` made, else None
    waiting_on_change: bool

    def __init__(self, env: Any, engines: list):
        self.env = env
        self.engines = engines
        self._changed = None
        #: whether an engine waits on :meth:`changed` (the next batch end wakes it): its event
        #: made and not yet fired (only :meth:`batch_ended` fires it)
        self.waiting_on_change = False

    @property
    def engines(self) -> list:
        """The engines, one per batch in flight."""
        return self._engines

    @engines.setter
    def engines(self, engines) -> None:
        self._engines = list(engines)
        # each distinct KV cache once: one shared by every engine, or one per engine
        self._pools = list({id(e.pool): e.pool for e in self._engines}.values())
        self._pool = self._pools[0] if len(self._pools) == 1 else None
        #: whether every engine uses one KV cache (else each has its own share of the blocks)
        self.shares_pool = self._pool is not None

    @property
    def index(self) -> int:
        return self.engines[0].index

    @property
    def outstanding(self) -> int:
        """Requests queued or running on any of the engines."""
        total = 0
        for e in self.engines:
            total += e.outstanding
        return total

    def start(self) -> None:
        for engine in self.engines:
            engine.start()

    def submit(self, request) -> None:
        """Hand *request* to the engine with the fewest requests (the first of equals)."""
        best = None
        fewest = 0
        for engine in self._engines:
            n = engine.outstanding
            if best is None or n < fewest:
                best, fewest = engine, n
        if best is None:
            raise RuntimeError("a pipeline-parallel replica without engines got a request")
        best.submit(request)

    def kv_blocks_used(self) -> int:
        """KV blocks in use on the replica: each distinct pool of the engines counted once (one
        shared pool, or one per engine when the blocks are split among them)."""
        if self._pool is not None:
            return self._pool.num_used
        return sum(p.num_used for p in self._pools)

    def queue_lengths(self) -> tuple[int, int]:
        """(running, waiting) requests over all the engines (from each one's ``outstanding``
        and ``waiting`` queue)."""
        waiting = total = 0
        for e in self._engines:
            waiting += len(e.waiting)
            total += e.outstanding
        return total - waiting, waiting

    def pending(self) -> list:
        """Every request still on one of the engines."""
        return [req for engine in self.engines for req in engine.pending()]

    def changed(self):
        """An event that fires when some engine's batch ends (blocks may have been freed)."""
        if self._changed is None or self._changed.triggered:
            self._changed = self.env.event()
        self.waiting_on_change = True
        return self._changed

    def batch_ended(self) -> None:
        """Called by an engine after each batch: wakes the engines waiting on :meth:`changed`."""
        if self.waiting_on_change:
            self.waiting_on_change = False
            self._changed.succeed()


__all__ = ["PipelinedReplica", "StagePipeline"]

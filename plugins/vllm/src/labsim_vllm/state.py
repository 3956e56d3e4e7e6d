"""What a vLLM replica holds, declared with its types in one place (:class:`ReplicaState`).

The replica is built in layers, one module each, every layer a subclass of the one below:
:class:`ReplicaState` (over the shell every engine shares,
:class:`~labsim_llm.engine.replica.ReplicaShell`) → ``SpanSteps`` (:mod:`~labsim_vllm.pipeline_span`)
→ ``SharedSpan`` → ``FastForward`` → ``DecodeGroup`` → ``V0Scheduler`` → ``V1Scheduler`` →
:class:`~labsim_vllm.scheduler.Replica`. Each layer reads and writes the state declared here,
and may call a method of a layer above it, declared here too (its body never runs: the layer
above overrides it). So each layer type-checks on its own (``mypy --check-untyped-defs``,
held by ``tests/test_vllm_typing.py``), and the chain is one that a compiler of typed Python
(mypyc) can lay out as fixed fields rather than a dictionary per replica.

The declarations change nothing at run time: the annotations set no value, and
:class:`~labsim_vllm.scheduler.Replica` sets every attribute in its constructor.

>>> from labsim_vllm.scheduler import Replica
>>> [cls.__name__ for cls in Replica.__mro__][:9]   # doctest: +NORMALIZE_WHITESPACE
['Replica', 'V1Scheduler', 'V0Scheduler', 'DecodeGroup', 'FastForward', 'SharedSpan',
 'SpanSteps', 'ReplicaState', 'ReplicaShell']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from labsim_llm.engine.replica import ReplicaShell

if TYPE_CHECKING:
    from collections.abc import Callable

    from labsim_llm.engine.kv_cache import BlockPool
    from labsim_llm.engine.multistep import MultiStepGate
    from labsim_llm.engine.pipeline import PipelinedReplica, StagePipeline

    from labsim_vllm.pipeline_span import PipelineSpan
    from labsim_vllm.seq import Seq, Span, Step


class ReplicaState(ReplicaShell):
    """The vLLM replica's state, typed, and the methods one layer calls on a layer above it
    (see the module docstring)."""

    # -- set by the shell (declared there; the pool narrowed: these engines always have one)
    pool: BlockPool
    waiting: Any                     # deque[Seq]: the queue, first come first served

    # -- configuration (Replica.__init__) ------------------------------------------------
    #: keep decoding requests as a group (False: every step walks every request, for tests)
    BULK: ClassVar[bool]
    block_size: int
    pricer: Any                      # the StepPricer
    pipeline: StagePipeline | None
    peers: PipelinedReplica | None
    span: PipelineSpan | None
    caching: bool
    chunked: bool
    prefill_first: bool
    watermark: int
    max_seqs: int
    max_tokens: int
    overhead: float
    overhead_per_req: float
    async_sched: bool
    fast_forward: bool
    gate: MultiStepGate
    multi_step: bool
    output_lag: bool
    _lone: bool

    # -- the step loop --------------------------------------------------------------------
    _cutoff: float
    _lag_first: list
    _lag_done: list
    _arrival: Any                    # a SimPy event while a shared-GPU span runs, else None
    _span_bounds: list[float] | None
    _span_cut: bool
    _last_in: float
    _gap_in: float
    _woken_uncut: bool
    _no: int
    _span_pricing: dict[int, tuple]
    _run_fns: dict | None
    _step_s: float

    # -- the running requests and the decode group -------------------------------------------
    _list: list[Seq] | None
    _special: list[Seq]
    _group: dict[int, Seq]
    G: int
    _g_end: float
    _nD: int
    _nW: int
    _S: int
    _cnt: list[int]
    _fin: dict[int, list[Seq]]
    _fin_keys: list[int]
    _dmax: int
    _fresh: list[Seq]
    _fresh_mixed: bool

    # -- methods of the layers above -----------------------------------------------------------
    # (each layer that calls one of these sits below the layer that defines it)

    def _num_running(self) -> int:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def _commit(self, step: Step, start: float, end: float) -> None:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def _emit(self, entries: list[tuple[Seq, int, int]], end: float) -> tuple[list, list, bool]:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def _record(self, step: Step, start: float, end: float) -> None:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def _finish(self, finished: list[Seq], end: float) -> None:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def finishes_unseen(self, requests: list) -> bool:
        raise NotImplementedError                   # labsim_vllm.scheduler.Replica

    def _hits(self, seq: Seq) -> list:
        raise NotImplementedError                   # labsim_vllm.v1.V1Scheduler

    def _start(self, seq: Seq, hits: list, need: int, n: int, running: list, entries: list) -> None:
        raise NotImplementedError                   # labsim_vllm.v1.V1Scheduler

    def _computed(self, entries: list[tuple[Seq, int, int]]) -> None:
        raise NotImplementedError                   # labsim_vllm.v1.V1Scheduler

    def _group_gaps(self, end: float, prev: float, tail: list | None = None) -> None:
        raise NotImplementedError                   # labsim_vllm.decode_group.DecodeGroup

    def _after_step(self, finished: list, joined: bool, end: float) -> None:
        raise NotImplementedError                   # labsim_vllm.decode_group.DecodeGroup

    def _decode_prices(self, b: int, ctx0: int,
                       maker: str = "decode_steps_fn") -> Callable[[int, int], list]:
        raise NotImplementedError                   # labsim_vllm.fast_forward.FastForward

    def _commit_span(self, step: Step, span: Span, j: int, start: float, bounds: list[float]) -> None:
        raise NotImplementedError                   # labsim_vllm.fast_forward.FastForward


__all__ = ["ReplicaState"]

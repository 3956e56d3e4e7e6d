"""What a TensorRT-LLM executor replica holds, declared with its types in one place
(:class:`ExecutorState`).

The replica is built in layers, one module each, every layer a subclass of the one below:
:class:`ExecutorState` (over the shell every engine shares,
:class:`~labsim_llm.engine.replica.ReplicaShell`) →
:class:`~labsim_trtllm.generation_group.GenerationGroup` →
:class:`~labsim_trtllm.executor.Replica`. The generation group reads and writes the state
declared here and calls a few of the executor's methods, declared here too (their bodies never
run: the executor overrides them). So each layer type-checks on its own
(``mypy --check-untyped-defs``, held by ``tests/test_trtllm_typing.py``), and the chain is one
that a compiler of typed Python (mypyc) can lay out as fixed fields rather than a dictionary
per replica (:mod:`labsim_trtllm.native`).

The declarations change nothing at run time: the annotations set no value, and
:class:`~labsim_trtllm.executor.Replica` sets every attribute in its constructor.

>>> from labsim_trtllm.executor import Replica
>>> [cls.__name__ for cls in Replica.__mro__][:4]
['Replica', 'GenerationGroup', 'ExecutorState', 'ReplicaShell']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from labsim_llm.engine.replica import ReplicaShell

if TYPE_CHECKING:
    from collections.abc import Callable

    from labsim_llm.engine.kv_cache import BlockPool
    from labsim_llm.engine.pipeline import StagePipeline

    from labsim_trtllm.generation_group import Cohort
    from labsim_trtllm.pricing import TrtStepPricer
    from labsim_trtllm.seq import Seq, Step


class ExecutorState(ReplicaShell):
    """The executor replica's state, typed, and the executor's methods the generation group
    calls (see the module docstring)."""

    # -- set by the shell (declared there; the pool narrowed: these engines always have one)
    pool: BlockPool
    waiting: Any                     # deque[Seq]: the queue, first come first served

    # -- configuration (Replica.__init__) ------------------------------------------------
    #: apply iterations that end before the next event without an event of their own
    spans: ClassVar[bool]
    #: the step pricer (typed: compiled in this group, its methods are called directly, not
    #: looked up by name at each price)
    pricer: TrtStepPricer
    tpb: int
    reuse: bool
    guaranteed: bool
    chunked: bool
    max_batch: int
    max_tokens: int
    pp: int
    pipeline: StagePipeline | None
    overlap: bool
    lookahead: int
    extra_token: int

    # -- the requests ---------------------------------------------------------------------
    active: list[Seq]
    now: float

    # -- the generation group (GenerationGroup._init_group) ---------------------------------
    grouped: bool
    _cohorts: list[Cohort]
    _gN: int
    _gheld: int
    _gneed: int
    _ahead: Step | None
    _n_order: int

    # -- methods of the executor (labsim_trtllm.executor.Replica) ---------------------------

    def _allocate(self, gens: list[Seq], contexts: list, decode_ctx: int, gen_blocks: int) -> Step:
        raise NotImplementedError

    def _take(self, n: int) -> None:
        raise NotImplementedError

    def _apply_gens(self, step: Step, end: float, finished: list[Seq]) -> list[tuple[Seq, float]]:
        raise NotImplementedError

    def _apply_contexts(self, step: Step, end: float, finished: list[Seq],
                        gap: Callable[[float], Any]) -> None:
        raise NotImplementedError

    def _add_gaps(self, gaps: list[float]) -> None:
        raise NotImplementedError

    def _record_step(self, step: Step) -> None:
        raise NotImplementedError

    def _finish(self, finished: list[Seq], end: float, members: bool = False) -> None:
        raise NotImplementedError


__all__ = ["ExecutorState"]

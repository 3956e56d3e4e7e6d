"""labsim-vllm's compiled twins: the replica's layers, compiled together by mypyc at install
(``setup.py``, :mod:`labsim.native`).

The replica is a chain of classes, one module each, over a typed state
(:mod:`labsim_vllm.state`), with its per-request state (:class:`~labsim_vllm.seq.Seq`) and
its pipeline span, and the group's own copies of the replica shell and the stage pipeline
every engine shares (labsim-llm's). Compiled as one group, each class keeps its attributes in fixed fields and
calls the others' methods directly, where Python looks each up by name. The group runs only as
a whole: :func:`classes` gives the compiled replica and pipeline span when every twin was
built from its module as it is now, else None, and the plugin then uses the pure classes
(:mod:`labsim_vllm.plugin`). Both give byte-identical outputs (``tests/test_vllm_native.py``).

>>> from labsim_vllm import native
>>> sorted(native.status()) == sorted(native.MODULES)
True
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_vllm`` (setup.py
#: reads the next line; in the copies it compiles, each import of one of them becomes an
#: import of its twin, so that the group's classes build on one another compiled)
MODULES = {"shell": "labsim_llm:engine/replica.py", "pipeline": "labsim_llm:engine/pipeline.py", "seq": "seq.py", "state": "state.py", "quiet_batches": "quiet_batches.py", "pipeline_span": "pipeline_span.py", "shared_span": "shared_span.py", "fast_forward": "fast_forward.py", "decode_group": "decode_group.py", "v0": "v0.py", "v1": "v1.py", "scheduler": "scheduler.py"}
#: packages whose sources mypyc reads to type the twins (setup.py reads the next line; found
#: next to this plugin's directory, else the twins are not built)
SIBLINGS = ["labsim", "labsim_llm", "labsim_gpus", "labsim_collectives"]

_PACKAGE = __name__.rpartition(".")[0]


def classes() -> tuple[type, type, type, type] | None:
    """``(Replica, PipelineSpan, StagePipeline, PipelinedReplica)`` compiled, when every twin of
    :data:`MODULES` is current (:func:`labsim.native.group`), else None: the replica and its
    pipeline span, and the group's copies of labsim-llm's stage pipeline and pipelined replica
    (which the compiled layers then reach as compiled objects)."""
    twins = _native.package_group(_PACKAGE, MODULES)
    if twins is None:
        return None
    return (twins["scheduler"].Replica, twins["pipeline_span"].PipelineSpan,
            twins["pipeline"].StagePipeline, twins["pipeline"].PipelinedReplica)


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    classes()
    return _native.package_status(_PACKAGE, MODULES)


__all__ = ["MODULES", "classes", "status"]

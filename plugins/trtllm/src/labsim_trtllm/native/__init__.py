"""labsim-trtllm's compiled twins: the executor replica's layers, compiled together by mypyc at
install (``setup.py``, :mod:`labsim.native`).

The replica is a chain of classes, one module each, over a typed state
(:mod:`labsim_trtllm.state`): the generation group, then the executor, with their per-request
and per-iteration records (:mod:`labsim_trtllm.seq`). Compiled as one group, each class keeps
its attributes in fixed fields and calls the others' methods directly, where Python looks each
up by name. The group runs only as a whole: :func:`classes` gives the compiled replica when
every twin was built from its module as it is now, else None, and the plugin then uses the
pure class (:mod:`labsim_trtllm.plugin`). Both give byte-identical outputs
(``tests/test_trtllm_native.py``).

>>> from labsim_trtllm import native
>>> sorted(native.status()) == sorted(native.MODULES)
True
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_trtllm`` (setup.py
#: reads the next line; in the copies it compiles, each import of one of them becomes an
#: import of its twin, so that the group's classes build on one another compiled)
MODULES = {"shell": "labsim_llm:engine/replica.py", "pipeline": "labsim_llm:engine/pipeline.py", "seq": "seq.py", "state": "state.py", "generation_group": "generation_group.py", "executor": "executor.py", "pricing": "pricing.py"}
#: packages whose sources mypyc reads to type the twins (setup.py reads the next line; found
#: next to this plugin's directory, else the twins are not built)
SIBLINGS = ["labsim", "labsim_llm", "labsim_gpus", "labsim_collectives"]

_PACKAGE = __name__.rpartition(".")[0]


def _compiled(twin: str, name: str) -> type | None:
    """Class *name* of the twin *twin*, when every twin of :data:`MODULES` is current
    (:func:`labsim.native.group`), else None."""
    twins = _native.package_group(_PACKAGE, MODULES)
    return None if twins is None else getattr(twins[twin], name)


def classes() -> type | None:
    """The executor ``Replica`` compiled, when every twin of :data:`MODULES` is current, else
    None."""
    return _compiled("executor", "Replica")


def pricer() -> type | None:
    """The step pricer ``TrtStepPricer`` compiled, when every twin of :data:`MODULES` is
    current, else None."""
    return _compiled("pricing", "TrtStepPricer")


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    classes()
    return _native.package_status(_PACKAGE, MODULES)


__all__ = ["MODULES", "classes", "pricer", "status"]

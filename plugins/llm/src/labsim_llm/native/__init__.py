"""labsim-llm's compiled twins (:mod:`labsim.native`): the engine modules its ``setup.py``
compiles with mypyc at install, where mypyc and a C compiler are at hand.

``labsim_llm.native.<name>`` is the twin of the module :data:`MODULES` names; each module
swaps its twin's definitions in at the end of its body (``labsim.native.use_twin``), only
when the twin was built from its current source.

>>> from labsim_llm import native
>>> sorted(native.status())
['kv_cache', 'step_runs']
"""

from __future__ import annotations

from labsim import native as _native

#: modules compiled into twins, by twin name: their path under ``src/labsim_llm`` (setup.py reads this line)
MODULES = {"kv_cache": "engine/kv_cache.py", "step_runs": "engine/step_runs.py"}


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    found = _native.status({f"{__name__}.{name}": "labsim_llm." + path[:-3].replace("/", ".")
                            for name, path in MODULES.items()})
    return {name.rpartition(".")[2]: how for name, how in found.items()}

"""Compiled twins of the engine's hottest pure-Python modules, and the rule that picks them.

When labsim-llm is installed where mypyc and a C compiler are at hand (its ``setup.py``
needs nothing more), the build compiles a copy of each module in :data:`MODULES` into
``labsim_llm.native.<name>``, an extension module that runs the very same code about twice
as fast. The copy records the SHA-256 of the source it was built from. The pure module
stays the source of truth: at import it swaps in its twin's definitions only when
:func:`twin` finds one built from its source as it is now, so an edited module never runs
stale compiled code, and a machine without a compiler runs the same simulation in pure
Python. Both give byte-identical outputs (``tests/test_llm_native.py`` drives the two side
by side).

``LABSIM_NATIVE=0`` in the environment ignores every twin (to compare, or to debug with
pure-Python tracebacks); ``LABSIM_PURE_PYTHON=1`` at install time builds none.

>>> from labsim_llm import native
>>> native.status()["kv_cache"] in ("compiled", "pure Python (not built)",
...                                 "pure Python (LABSIM_NATIVE=0)", "pure Python (stale: source changed)")
True
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

#: modules of labsim_llm compiled into twins, by twin name: their path under ``src/labsim_llm``
MODULES = {"kv_cache": "engine/kv_cache.py", "step_runs": "engine/step_runs.py"}

_status: dict[str, str] = {}


def source_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a module's source file, as a twin records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def twin(name: str, source_file: str) -> ModuleType | None:
    """The compiled twin *name* when it was built from *source_file* as that file is now,
    else ``None`` (not built, built from another version of the source, or
    ``LABSIM_NATIVE=0``).

    (:func:`use_twin` swaps its definitions in.)
    """
    if os.environ.get("LABSIM_NATIVE", "1") == "0":
        _status[name] = "pure Python (LABSIM_NATIVE=0)"
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        _status[name] = "pure Python (not built)"
        return None
    if getattr(module, "SOURCE_SHA256", None) != source_digest(source_file):
        _status[name] = "pure Python (stale: source changed)"
        return None
    _status[name] = "compiled"
    return module


def use_twin(name: str, namespace: dict, names) -> None:
    """Replace *names* in the module *namespace* (its ``globals()``) by its compiled twin's,
    when :func:`twin` finds one built from its current source. A module of :data:`MODULES`
    calls it last, keeping the pure definitions for comparison::

        PURE = {"BlockPool": BlockPool, "block_keys": block_keys}
        if not __name__.startswith(native.__name__):     # (not in the twin itself)
            native.use_twin("kv_cache", globals(), PURE)
    """
    module = twin(name, namespace["__file__"])
    if module is not None:
        namespace.update((key, getattr(module, key)) for key in names)


def compiled(name: str) -> bool:
    """Whether the module of :data:`MODULES` *name*, imported already, runs its compiled twin
    (a caller may then pick the loop over an array expression, say)."""
    return _status.get(name) == "compiled"


def status() -> dict[str, str]:
    """How each module of :data:`MODULES` runs in this process: ``"compiled"`` or why not."""
    for name, relative in MODULES.items():
        importlib.import_module("labsim_llm." + relative[:-3].replace("/", "."))
    return {name: _status.get(name, "pure Python (not built)") for name in MODULES}

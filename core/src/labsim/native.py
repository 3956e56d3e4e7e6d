"""Compiled twins of a plugin's hottest pure-Python modules, and the rule that picks them.

A plugin can have mypyc compile a copy of a hot module at install (its ``setup.py``; labsim-llm
and labsim-gpus do) into ``<package>.native.<name>``: an extension module that runs the very
same code several times as fast. The copy records the SHA-256 of the source it was built
from. The pure module stays the source of truth: at the end of its body it calls
:func:`use_twin`, which swaps in the twin's definitions only when the twin was built from the
module's source as it is now (and, for a twin compiled against other labsim packages' types,
from their modules as they are now: ``SIBLING_SHA256``). So an edited module never runs stale
compiled code, and a machine without a C compiler runs the same simulation in pure Python.
Twins that build on one another run only together (:func:`group`). Both give
byte-identical outputs (each plugin's ``test_*_native.py`` drives the two side by side).

``LABSIM_NATIVE=0`` in the environment ignores every twin (to compare, or to debug with
pure-Python tracebacks); ``LABSIM_PURE_PYTHON=1`` at install time builds none.

>>> from labsim import native
>>> native.twin("labsim.no_such_twin", __file__) is None
True
>>> native.status({"labsim.no_such_twin": None})
{'labsim.no_such_twin': 'pure Python (not built)'}
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from labsim.native_build import dotted_name

_status: dict[str, str] = {}


def source_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a module's source file, as a twin records it (``SOURCE_SHA256``)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def twin(module: str, source_file: str) -> ModuleType | None:
    """The compiled twin *module* (``labsim_llm.native.kv_cache``) when it was built from
    *source_file* as that file is now, else ``None``: not built, built from another version of
    the source, or ``LABSIM_NATIVE=0``."""
    if os.environ.get("LABSIM_NATIVE", "1") == "0":
        _status[module] = "pure Python (LABSIM_NATIVE=0)"
        return None
    try:
        found = importlib.import_module(module)
    except ImportError:
        _status[module] = "pure Python (not built)"
        return None
    if getattr(found, "SOURCE_SHA256", None) != source_digest(source_file):
        _status[module] = "pure Python (stale: source changed)"
        return None
    changed = _changed_sibling(getattr(found, "SIBLING_SHA256", {}))
    if changed is not None:
        _status[module] = f"pure Python (stale: {changed} changed)"
        return None
    _status[module] = "compiled"
    return found


def _changed_sibling(digests: dict[str, str]) -> str | None:
    """The first module of another package a twin was compiled against (``SIBLING_SHA256``:
    module name → the SHA-256 of its source then) whose source differs now, else None."""
    for name, digest in digests.items():
        if name not in _sibling_digests:
            origin = getattr(importlib.util.find_spec(name), "origin", None)
            _sibling_digests[name] = source_digest(origin) if origin else None
        if _sibling_digests[name] != digest:
            return name
    return None


#: module name → SHA-256 of its source, as found in this process (twins of a group share them)
_sibling_digests: dict[str, str | None] = {}


def use_twin(module: str, namespace: dict, names) -> None:
    """Replace *names* in a module's *namespace* (its ``globals()``) by those of its compiled
    twin *module*, when :func:`twin` finds one built from the module's current source; in the
    twin itself (the same code, compiled) do nothing. A module calls it last, keeping its pure
    definitions for comparison::

        PURE = {"BlockPool": BlockPool, "block_keys": block_keys}
        native.use_twin("labsim_llm.native.kv_cache", globals(), PURE)
    """
    if namespace["__name__"] == module:
        return
    found = twin(module, namespace["__file__"])
    if found is not None:
        namespace.update((key, getattr(found, key)) for key in names)


def use_group_twin(package: str, modules: dict[str, str], name: str, namespace: dict, names) -> None:
    """:func:`use_twin` for a module whose twin is compiled with others, ``<package>.native.<name>``
    of a group (*modules*: ``<package>.native.MODULES``): its definitions are swapped in only
    when every twin of the group was built from its module as it is now (:func:`package_group`),
    since the twins call one another's compiled code. labsim-gpus's kernel formulas and its
    decode pricer are such a group::

        native.use_group_twin("labsim_gpus", gpus_native.MODULES, "kernels", globals(), PURE)
    """
    if namespace["__name__"] == f"{package}.native.{name}":
        return
    found = package_group(package, modules)
    if found is not None:
        namespace.update((key, getattr(found[name], key)) for key in names)


def group(modules: dict[str, str]) -> dict[str, ModuleType] | None:
    """The compiled twins of modules that only run together, or ``None``: *modules* maps each
    twin's name to its pure module's source file. A group's twins import one another (a
    compiled class over a compiled base class), so one twin built from an older source holds
    back the whole group, which then runs as pure Python. ``labsim_vllm``'s replica layers are
    such a group (:func:`labsim_vllm.native.classes`)."""
    found = {name: twin(name, source) for name, source in modules.items()}
    twins = {name: mod for name, mod in found.items() if mod is not None}
    if len(twins) == len(found):
        return twins
    held = ", ".join(sorted(name.rpartition(".")[2] for name, mod in found.items() if mod is None))
    for name, mod in found.items():
        if mod is not None:
            _status[name] = f"pure Python (its group's {held} not current)"
    return None


def compiled(module: str) -> bool:
    """Whether the twin *module* runs in place of its pure module, imported already (a caller
    may then pick a loop over an array expression, say)."""
    return _status.get(module) == "compiled"


def package_group(package: str, modules: dict[str, str]) -> dict[str, ModuleType] | None:
    """:func:`group` of a plugin's twins that run together, by twin name: *modules* is the
    ``MODULES`` of ``<package>.native`` (each twin's name → its pure module's path under
    *package*, or under the package named before a colon: ``"labsim_llm:engine/replica.py"``).

    Each module of a group asks as it is imported; the group is checked once a process (and
    ``LABSIM_NATIVE`` setting): its sources found and hashed once, not once per module."""
    key = (package, tuple(modules.items()), os.environ.get("LABSIM_NATIVE", "1"))
    if key not in _package_groups:
        found = group({f"{package}.native.{name}": _source_file(dotted_name(package, path))
                       for name, path in modules.items()})
        _package_groups[key] = None if found is None else {
            name.rpartition(".")[2]: mod for name, mod in found.items()}
    return _package_groups[key]


#: (package, its MODULES, LABSIM_NATIVE) → what :func:`package_group` found
_package_groups: dict[tuple, dict[str, ModuleType] | None] = {}


def _source_file(module: str) -> str:
    """The source file of the pure *module*, found without importing it."""
    return importlib.util.find_spec(module).origin


def package_status(package: str, modules: dict[str, str]) -> dict[str, str]:
    """:func:`status` of a plugin's twins: *modules* maps each twin's name to its pure
    module's path under the import *package* (``{"kv_cache": "engine/kv_cache.py"}``, the
    ``MODULES`` of ``<package>.native``; see :func:`package_group`); the answer is by twin name."""
    found = status({f"{package}.native.{name}": dotted_name(package, path) for name, path in modules.items()})
    return {name.rpartition(".")[2]: how for name, how in found.items()}


def status(modules: dict) -> dict[str, str]:
    """How each twin of *modules* (twin module name → its pure module's name, imported here)
    runs in this process: ``"compiled"``, or why not."""
    for pure in modules.values():
        if pure is not None:
            importlib.import_module(pure)
    return {name: _status.get(name, "pure Python (not built)") for name in modules}


__all__ = ["compiled", "group", "package_status", "source_digest", "status", "twin", "use_group_twin",
           "use_twin"]

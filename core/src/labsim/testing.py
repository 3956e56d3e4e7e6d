"""Helpers for testing plugins: without the installed entry points, and their typing.

>>> from labsim.testing import make_registry
>>> import labsim_gpus.plugin
>>> registry = make_registry(labsim_gpus.plugin)          # doctest: +SKIP
>>> registry.get("devices", "h100").name                   # doctest: +SKIP
'H100-SXM'
"""

from __future__ import annotations

import os
from pathlib import Path

from labsim.plugins import load_plugins
from labsim.registry import Registry


def make_registry(*plugins, load_entrypoints: bool = False) -> Registry:
    """A registry of the kernel's built-ins plus the given plugin modules or objects."""
    return Registry(load_plugins(load_entrypoints=load_entrypoints, extra_modules=plugins))


def _source_root(module) -> str:
    """The directory a package is imported from (``src/`` of an editable install)."""
    return str(Path(module.__file__).resolve().parent.parent)


def type_errors(package, *imports, cache_dir: str | None = None) -> str:
    """What ``mypy --check-untyped-defs`` reports on *package* (a module object), reading the
    packages it *imports* (module objects) from their sources; ``""`` when it finds nothing.
    A plugin whose modules mypyc compiles (:mod:`labsim.native`) keeps them typed so.

    >>> import labsim_llm, labsim_vllm                                    # doctest: +SKIP
    >>> type_errors(labsim_vllm, labsim_llm, labsim)                       # doctest: +SKIP
    ''
    """
    from mypy import api

    previous = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = os.pathsep.join(_source_root(m) for m in imports)
    try:
        out, err, status = api.run(["--check-untyped-defs", "--ignore-missing-imports",
                                    "--no-error-summary",
                                    *(["--cache-dir", cache_dir] if cache_dir else []),
                                    str(Path(package.__file__).resolve().parent)])
    finally:
        if previous is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = previous
    return "" if status == 0 else out + err


def exact_bits(value):
    """*value* with every float as its bytes and every value with its type (so -0.0 and 0.0, or
    1 and 1.0, differ), lists and tuples item by item: what a compiled twin's answer and its
    pure module's must share.

    >>> exact_bits([1, 1.0, (0.5,)])
    ['list', ('int', 1), ('float', '0x1.0000000000000p+0'), ['tuple', ('float', '0x1.0000000000000p-1')]]
    """
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, *map(exact_bits, value)]
    return (type(value).__name__, value.hex() if isinstance(value, float) else value)


def outputs_compiled_and_pure(experiment, out_dir) -> dict[str, dict[str, bytes]]:
    """The output files of ``labsim run`` of the *experiment* file, run once with the compiled
    twins and once with ``LABSIM_NATIVE=0`` (each in a fresh process, into a folder under
    *out_dir*): ``{"1": {name: bytes}, "0": {name: bytes}}``, which must be equal.

    >>> outputs = outputs_compiled_and_pure("examples/quickstart.yaml", tmp_path)  # doctest: +SKIP
    >>> outputs["1"] == outputs["0"]                                                # doctest: +SKIP
    True
    """
    import subprocess
    import sys

    outputs = {}
    for flag in ("1", "0"):
        out = Path(out_dir) / flag
        subprocess.run([sys.executable, "-m", "labsim", "run", str(experiment), "--out", str(out)],
                       check=True, capture_output=True, env={**os.environ, "LABSIM_NATIVE": flag})
        outputs[flag] = {f.name: f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
    return outputs


def group_status_when_changed(native, monkeypatch, *, edited: str | None = None,
                              sibling: str | None = None) -> dict[str, str]:
    """The status of a plugin's group of compiled twins (its ``<package>.native`` module, with
    ``MODULES`` and ``status()``, and ``classes()`` where the plugin takes its classes from it)
    once one of the group's source files (its name ending in *edited*) or one module of another
    package the twins were typed against (*sibling*, a module name) has changed since the
    build: the group must then be held back as a whole (``classes()`` None, or no group from
    :func:`labsim.native.package_group`), which this asserts. The statuses it leaves are
    undone with the test's other patches; *monkeypatch* is pytest's.

    >>> status = group_status_when_changed(labsim_vllm.native, monkeypatch, edited="v0.py")  # doctest: +SKIP
    >>> status["v0"], status["scheduler"]                                                    # doctest: +SKIP
    ('pure Python (stale: source changed)', "pure Python (its group's v0 not current)")
    """
    from labsim import native as labsim_native

    monkeypatch.setattr(labsim_native, "_status", dict(labsim_native._status))
    monkeypatch.setattr(labsim_native, "_package_groups", {})   # checked again, as in a new process
    monkeypatch.delenv("LABSIM_NATIVE", raising=False)
    if edited is not None:
        real = labsim_native.source_digest
        monkeypatch.setattr(labsim_native, "source_digest",
                            lambda path: "edited" if str(path).endswith(edited) else real(path))
    if sibling is not None:
        monkeypatch.setitem(labsim_native._sibling_digests, sibling, "edited")
    held = (native.classes() if hasattr(native, "classes")
            else labsim_native.package_group(native.__name__.rpartition(".")[0], native.MODULES))
    assert held is None, "a changed source must hold back the whole group"
    return native.status()

"""labsim.native: a module swaps in its compiled twin only when the twin was built from its
current source, and never with LABSIM_NATIVE=0 (a stand-in twin, a plain module, here)."""

from __future__ import annotations

import sys

import pytest
from labsim import native


@pytest.fixture
def twin_of(tmp_path, monkeypatch):
    """Write a source file and a 'twin' module recording *digest* of it; return both names."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("LABSIM_NATIVE", raising=False)
    source = tmp_path / "hot.py"
    source.write_text("def f():\n    return 'pure'\n")

    def make(name: str, digest: str | None = None) -> tuple[str, str]:
        digest = native.source_digest(source) if digest is None else digest
        (tmp_path / f"{name}.py").write_text(f"SOURCE_SHA256 = {digest!r}\ndef f():\n    return 'twin'\n")
        sys.modules.pop(name, None)
        return name, str(source)

    return make


def _module(source: str) -> dict:
    def f():
        return "pure"
    return {"__name__": "hot", "__file__": source, "f": f}


def test_a_twin_built_from_the_current_source_replaces_the_definitions(twin_of):
    name, source = twin_of("hot_twin_current")
    namespace = _module(source)
    native.use_twin(name, namespace, ["f"])
    assert namespace["f"]() == "twin"
    assert native.compiled(name) and native.status({name: None}) == {name: "compiled"}


def test_a_stale_or_missing_twin_leaves_the_pure_module(twin_of):
    name, source = twin_of("hot_twin_stale", digest="0" * 64)
    namespace = _module(source)
    native.use_twin(name, namespace, ["f"])
    assert namespace["f"]() == "pure" and not native.compiled(name)
    assert native.status({name: None})[name] == "pure Python (stale: source changed)"
    native.use_twin("hot_twin_never_built", namespace, ["f"])
    assert native.status({"hot_twin_never_built": None}) == {"hot_twin_never_built": "pure Python (not built)"}


def test_labsim_native_0_ignores_every_twin(twin_of, monkeypatch):
    name, source = twin_of("hot_twin_disabled")
    monkeypatch.setenv("LABSIM_NATIVE", "0")
    namespace = _module(source)
    native.use_twin(name, namespace, ["f"])
    assert namespace["f"]() == "pure"
    assert native.status({name: None}) == {name: "pure Python (LABSIM_NATIVE=0)"}


def test_the_twin_itself_does_not_swap(twin_of):
    name, source = twin_of("hot_twin_self")
    namespace = {**_module(source), "__name__": name}
    native.use_twin(name, namespace, ["f"])
    assert namespace["f"]() == "pure"

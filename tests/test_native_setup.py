"""Every plugin that ships compiled twins builds them with the same ``setup.py``.

The file cannot be shared by import (each plugin builds on its own, in an isolated
environment), so each plugin carries a copy; this keeps the copies one file, so that a fix
made in one reaches all (labsim.native; docs/writing_plugins.md, section 7).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_plugins_that_build_twins_carry_the_same_setup_py():
    copies = {p.parent.name: p.read_bytes() for p in sorted(ROOT.glob("plugins/*/setup.py"))}
    assert {"llm", "gpus", "vllm"} <= copies.keys()
    assert len(set(copies.values())) == 1, sorted(copies)


def test_each_plugin_with_a_setup_py_names_its_twins():
    for setup in ROOT.glob("plugins/*/setup.py"):
        native = next(setup.parent.glob("src/*/native/__init__.py"))
        assert any(line.startswith("MODULES = ") for line in native.read_text().splitlines())

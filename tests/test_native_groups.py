"""What both serving engines' groups of compiled twins share (``labsim_vllm.native``,
``labsim_trtllm.native``): each is held back as a whole, and runs as pure Python, once a module
of another package it was typed against changes, or once the replica shell or stage pipeline
it holds its own compiled copies of (labsim-llm's) changes. CI builds the twins and sets
``LABSIM_REQUIRE_NATIVE=1``; elsewhere these tests skip when a group was not built."""

from __future__ import annotations

import importlib
import os

import pytest
from labsim.testing import group_status_when_changed

ENGINES = ["labsim_vllm", "labsim_trtllm"]


def _group(package: str):
    """*package*'s ``native`` module, its group current, or skip (fail under LABSIM_REQUIRE_NATIVE=1)."""
    native = importlib.import_module(f"{package}.native")
    if native.classes() is None:
        assert os.environ.get("LABSIM_REQUIRE_NATIVE") != "1", native.status()
        pytest.skip(f"{package}'s compiled twins do not run here: {native.status()}")
    return native


@pytest.mark.parametrize("package", ENGINES)
def test_a_twin_compiled_against_an_edited_sibling_module_is_stale(package, monkeypatch):
    """mypyc compiled the replica's state against labsim-llm's types (its KV cache's among
    them): once that module changes, the group runs as pure Python until it is built again."""
    status = group_status_when_changed(_group(package), monkeypatch, sibling="labsim_llm.engine.kv_cache")
    assert status["state"] == "pure Python (stale: labsim_llm.engine.kv_cache changed)"
    assert status["seq"].startswith("pure Python (its group's ")


@pytest.mark.parametrize("package", ENGINES)
@pytest.mark.parametrize("module, copy", [("replica.py", "shell"), ("pipeline.py", "pipeline")])
def test_a_group_s_copy_of_a_shared_module_is_stale_once_that_module_changes(package, module, copy,
                                                                            monkeypatch):
    """The group holds its own compiled copies of the replica shell and the stage pipeline every
    engine shares (``labsim_llm/engine/replica.py``, ``pipeline.py``): once one of those files
    changes, the whole group runs as pure Python until it is built again."""
    status = group_status_when_changed(_group(package), monkeypatch, edited=module)
    assert status[copy] == "pure Python (stale: source changed)"
    assert status["state"] == f"pure Python (its group's {copy} not current)"

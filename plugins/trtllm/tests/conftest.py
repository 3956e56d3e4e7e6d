"""Fixtures of the TensorRT-LLM plugin's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pure_replica(monkeypatch):
    """Runs in this test use the pure-Python executor replica, whether or not its compiled twin
    is built (:mod:`labsim_trtllm.native`): a test that spies on or patches the replica's
    methods patches that class, which compiled code would not call.
    ``tests/test_trtllm_native.py`` holds the twin to the same outputs."""
    from labsim_trtllm import executor, plugin

    monkeypatch.setattr(plugin, "Replica", executor.Replica)

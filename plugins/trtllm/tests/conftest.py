"""Fixtures of the TensorRT-LLM plugin's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pure_replica(monkeypatch):
    """Runs in this test use the pure-Python executor replica and step pricer, whether or not
    their compiled twins are built (:mod:`labsim_trtllm.native`, :mod:`labsim_llm.native`): a
    test that spies on or patches their methods patches those classes, which compiled code
    would not call.
    ``tests/test_trtllm_native.py`` holds the twin to the same outputs."""
    from labsim_llm.engine import step_cost
    from labsim_trtllm import executor, plugin, pricing

    monkeypatch.setattr(plugin, "Replica", executor.Replica)
    monkeypatch.setattr(step_cost, "StepPricer", step_cost.PURE["StepPricer"])
    monkeypatch.setattr(pricing, "StepPricer", step_cost.PURE["StepPricer"])
    monkeypatch.setattr(plugin, "TrtStepPricer", pricing.TrtStepPricer)

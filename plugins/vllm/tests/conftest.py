"""Fixtures of the vLLM plugin's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pure_replica(monkeypatch):
    """Runs in this test use the pure-Python replica, pipeline span, stage pipeline, pipelined
    replica and step pricer, whether or not their compiled twins are built (:mod:`labsim_vllm.native`,
    :mod:`labsim_llm.native`):
    a test that spies on or patches the replica's methods patches those classes, which compiled
    code would not call. ``tests/test_vllm_native.py`` holds the twins to the same outputs (it
    asks for this fixture half-way through a test, ``request.getfixturevalue``)."""
    from labsim_llm.engine import pipeline, step_cost
    from labsim_vllm import pipeline_span, plugin, scheduler

    monkeypatch.setattr(plugin, "Replica", scheduler.Replica)
    monkeypatch.setattr(plugin, "PipelineSpan", pipeline_span.PipelineSpan)
    monkeypatch.setattr(plugin, "StagePipeline", pipeline.StagePipeline)
    monkeypatch.setattr(plugin, "PipelinedReplica", pipeline.PipelinedReplica)
    monkeypatch.setattr(step_cost, "StepPricer", step_cost.PURE["StepPricer"])
    monkeypatch.setattr(plugin, "StepPricer", step_cost.PURE["StepPricer"])

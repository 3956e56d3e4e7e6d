"""Fixtures of the labsim-llm tests: a registry of this plugin plus a fake serving framework."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import labsim_llm.plugin  # noqa: E402
import llm_fake_server  # noqa: E402
from labsim.testing import make_registry  # noqa: E402


@pytest.fixture(scope="session")
def llm_registry():
    """The kernel's built-ins, labsim-llm's models and workloads, and ``fake_server``."""
    return make_registry(labsim_llm.plugin, llm_fake_server)


@pytest.fixture
def pure_metrics(monkeypatch):
    """Runs in this test record their metrics with the pure-Python ``ServingMetrics``,
    ``GapHistogram`` and ``LatencySample``, whether or not their compiled twins are built
    (:mod:`labsim_llm.native`): a test that patches their class constants or the module's
    ``KEPT_CHUNK`` patches what the pure classes read, which compiled code would not.
    ``tests/test_llm_native.py`` holds the twins to the pure classes."""
    from labsim_llm import engine
    from labsim_llm.engine import serving_engine, serving_metrics

    for name in ("ServingMetrics", "GapHistogram", "LatencySample"):
        monkeypatch.setattr(serving_metrics, name, serving_metrics.PURE[name])
    monkeypatch.setattr(serving_engine, "ServingMetrics", serving_metrics.PURE["ServingMetrics"])
    monkeypatch.setattr(engine, "ServingMetrics", serving_metrics.PURE["ServingMetrics"])
    monkeypatch.setattr(engine, "GapHistogram", serving_metrics.PURE["GapHistogram"])

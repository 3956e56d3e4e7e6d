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

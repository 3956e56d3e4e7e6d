"""Kernel tests run against stand-in plugins only, never the installed entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import kernel_test_plugin  # noqa: E402
from labsim.testing import make_registry  # noqa: E402


@pytest.fixture
def registry():
    """The kernel's built-ins plus the ``ticks`` workload and ``queue`` framework."""
    return make_registry(kernel_test_plugin)


@pytest.fixture
def write(tmp_path):
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


BASIC = """\
name: basic
simulation: {max_simulation_time: 1000, random_seed: 3}
workload:
  type: ticks
  count: 40
  interval_dist_config: {type: Exponential, rate: 2}
frameworks_to_test:
  - name: a
    type: queue
    config: {service_dist_config: {type: Exponential, mean: 0.3}}
"""


@pytest.fixture
def basic_file(write):
    return write("basic.yaml", BASIC)

"""Every example experiment validates against the installed plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
from labsim.orchestrator import Orchestrator, load_experiment

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path, installed_registry):
    Orchestrator(load_experiment(path), installed_registry)

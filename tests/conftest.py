"""Cross-package tests: they use the installed plugins (pip install -r requirements-dev.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def speed_serving(root):
    """``benchmarks/speed_serving.py`` as a module (one per test module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("speed_serving", root / "benchmarks" / "speed_serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def installed_registry():
    from labsim.registry import get_registry

    registry = get_registry()
    assert not registry.loaded.failed, f"plugins failed to load: {registry.loaded.failed}"
    return registry

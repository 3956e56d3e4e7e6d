"""The compiled executor replica (``labsim_trtllm.native``) gives exactly what the pure-Python
one gives.

Every case of the fast-path equivalence tests (the generation group, spans, the overlap
scheduler, both capacity policies, chunked context, block reuse with conversations, pipeline
parallelism, replicas, a time limit) runs with the compiled replica and again with the pure
class, with a steps table and without (without, a span keeps the step sums in locals), and a
GPU shared by two executors under MPS: identical request and step tables and summary. Shipped
examples give the same files with ``LABSIM_NATIVE=0``. CI builds the twins and sets
``LABSIM_REQUIRE_NATIVE=1``, so these tests run there; elsewhere they skip when the twins
were not built.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import labsim
import pytest
from labsim.testing import group_status_when_changed
from labsim_trtllm import executor, native, plugin

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"
HERE = Path(__file__).resolve().parent


def _compiled() -> type:
    """The compiled ``Replica``, or skip (fail under LABSIM_REQUIRE_NATIVE=1)."""
    replica = native.classes()
    if replica is None:
        assert not REQUIRED, native.status()
        pytest.skip(f"labsim_trtllm's compiled twins do not run here: {native.status()}")
    return replica


def _cases() -> dict:
    """The fast-path equivalence tests' cases with a steps table and without, and two
    executors sharing one GPU."""
    spec = importlib.util.spec_from_file_location("trtllm_speed_cases",
                                                  HERE / "test_trtllm_speed_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = {}
    for name, cfg in module.CASES.items():
        for record in (True, False):
            cfg = copy.deepcopy(cfg)
            for fw in cfg["frameworks_to_test"]:
                fw["config"]["record_steps"] = record
            cases[f"{name}-{'rows' if record else 'sums'}"] = cfg
    shared = copy.deepcopy(module.CASES["plain"])
    shared["hardware_profile"] = {**shared.get("hardware_profile", {}), "sharing": {"type": "mps"}}
    shared["frameworks_to_test"] = [
        {"name": name, "type": "trtllm", "placement": {"gpu": "gpu0"},
         "config": {"model": "Llama-3.1-8B", "free_gpu_memory_fraction": 0.4}}
        for name in ("a", "b")]
    cases["shared-gpu-mps"] = shared
    return cases


CASES = _cases()


def _outputs(cfg) -> tuple[str, str, str]:
    result = labsim.run(copy.deepcopy(cfg))
    steps = result.table("steps") if cfg["frameworks_to_test"][0]["config"].get("record_steps", True) else None
    return (repr(result.table("requests")), repr(steps),
            repr((result.summary["frameworks"], result.summary["simulated_time_s"])))


def test_the_plugin_runs_the_compiled_replica_when_it_is_current():
    replica = _compiled()
    assert plugin.Replica is replica and replica is not executor.Replica
    assert set(native.status().values()) == {"compiled"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_compiled_replica_gives_the_outputs_of_the_pure_one(case, monkeypatch):
    _compiled()
    compiled = _outputs(CASES[case])
    monkeypatch.setattr(plugin, "Replica", executor.Replica)
    pure = _outputs(CASES[case])
    assert compiled == pure
    assert "finished" in compiled[2]


@pytest.mark.parametrize("example", ["trtllm_chat_llama8b_h100.yaml"])
def test_a_shipped_example_is_byte_identical_in_pure_python(example, tmp_path):
    """``labsim run`` with the compiled replica and again with ``LABSIM_NATIVE=0``: the same files."""
    _compiled()
    path = HERE.parent.parent.parent / "examples" / example
    outputs = {}
    for flag in ("1", "0"):
        out = tmp_path / flag
        subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--out", str(out)],
                       check=True, capture_output=True, env={**os.environ, "LABSIM_NATIVE": flag})
        outputs[flag] = {f.name: f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
    assert outputs["1"].keys() == outputs["0"].keys() and "requests.csv" in outputs["1"]
    assert outputs["1"] == outputs["0"]


def test_a_stale_twin_holds_back_the_whole_group(monkeypatch):
    """One module edited since the twins were built: every twin of the group is left out (they
    build on one another), and the plugin would run the pure class."""
    _compiled()
    status = group_status_when_changed(native, monkeypatch, edited="generation_group.py")
    assert status["generation_group"] == "pure Python (stale: source changed)"
    assert status["executor"] == "pure Python (its group's generation_group not current)"

"""The compiled replica (``labsim_vllm.native``) gives exactly what the pure-Python one gives.

Every case of the fast-path equivalence tests (the decode group, fast-forward, preemption,
prefix caching, V0, async scheduling, pipeline parallelism and its span, replicas, a time
limit) runs with the compiled replica and pipeline span and again with the pure classes:
identical request and step tables and summary. Shipped examples (a shared GPU among them) give the same files with
``LABSIM_NATIVE=0``. CI builds the twins and sets ``LABSIM_REQUIRE_NATIVE=1``, so these tests
run there; elsewhere they skip when the twins were not built.
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
from labsim_vllm import native, pipeline_span, plugin, scheduler

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"
HERE = Path(__file__).resolve().parent


def _compiled():
    """The compiled ``(Replica, PipelineSpan)``, or skip (fail under LABSIM_REQUIRE_NATIVE=1)."""
    classes = native.classes()
    if classes is None:
        assert not REQUIRED, native.status()
        pytest.skip(f"labsim_vllm's compiled twins do not run here: {native.status()}")
    return classes


def _cases() -> dict:
    """The fast-path equivalence tests' cases, and their pipeline-parallel ones (with and
    without a steps table: without, the span keeps the step sums in locals)."""
    spec = importlib.util.spec_from_file_location("vllm_speed_cases", HERE / "test_vllm_speed_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = dict(module.CASES)
    for name, cfg in module.PP_CASES.items():
        for record in (True, False):
            cfg = copy.deepcopy(cfg)
            cfg["frameworks_to_test"][0]["config"]["record_steps"] = record
            cases[f"{name}-{'rows' if record else 'sums'}"] = cfg
    return cases


CASES = _cases()


def _outputs(cfg) -> tuple[str, str, str]:
    result = labsim.run(copy.deepcopy(cfg))
    steps = result.table("steps") if cfg["frameworks_to_test"][0]["config"].get("record_steps", True) else None
    return (repr(result.table("requests")), repr(steps),
            repr({**result.summary["frameworks"], "t": result.summary["simulated_time_s"]}))


def test_the_plugin_runs_the_compiled_classes_when_they_are_current():
    replica, span = _compiled()
    assert (plugin.Replica, plugin.PipelineSpan) == (replica, span)
    assert replica is not scheduler.Replica and span is not pipeline_span.PipelineSpan
    assert set(native.status().values()) == {"compiled"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_compiled_replica_gives_the_outputs_of_the_pure_one(case, monkeypatch):
    replica, span = _compiled()
    compiled = _outputs(CASES[case])
    monkeypatch.setattr(plugin, "Replica", scheduler.Replica)
    monkeypatch.setattr(plugin, "PipelineSpan", pipeline_span.PipelineSpan)
    pure = _outputs(CASES[case])
    assert compiled == pure
    assert "finished" in compiled[2]


@pytest.mark.parametrize("example", ["quickstart.yaml", "seed001.yaml", "sharing_two_chat_servers.yaml"])
def test_a_shipped_example_is_byte_identical_in_pure_python(example, tmp_path):
    """``labsim run`` with the compiled replica and again with ``LABSIM_NATIVE=0``: the same
    files (seed 001's file caches the answers of conversations' turns, whose keys may be a
    range; the last example shares a GPU: spans timed at the GPU's shared rate)."""
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
    build on one another), and the plugin's classes are the pure ones."""
    _compiled()
    from labsim import native as labsim_native

    real = labsim_native.source_digest
    monkeypatch.setattr(labsim_native, "source_digest",
                        lambda path: "edited" if str(path).endswith("v0.py") else real(path))
    assert native.classes() is None
    status = native.status()
    assert status["v0"] == "pure Python (stale: source changed)"
    assert status["scheduler"] == "pure Python (its group's v0 not current)"


def test_a_twin_compiled_against_an_edited_sibling_module_is_stale(monkeypatch):
    """mypyc compiled the replica's state against the shell's types (labsim_llm): once the
    shell's module changes, the group runs as pure Python until it is built again."""
    _compiled()
    from labsim import native as labsim_native

    monkeypatch.setitem(labsim_native._sibling_digests, "labsim_llm.engine.replica", "edited")
    assert native.classes() is None
    status = native.status()
    assert status["state"] == "pure Python (stale: labsim_llm.engine.replica changed)"
    assert status["v1"] == "pure Python (its group's state not current)"

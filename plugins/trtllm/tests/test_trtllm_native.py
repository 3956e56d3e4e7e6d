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
from pathlib import Path

import labsim
import pytest
from labsim.testing import exact_bits, group_status_when_changed, outputs_compiled_and_pure
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
    outputs = outputs_compiled_and_pure(path, tmp_path)
    assert outputs["1"].keys() == outputs["0"].keys() and "requests.csv" in outputs["1"]
    assert outputs["1"] == outputs["0"]


def test_a_stale_twin_holds_back_the_whole_group(monkeypatch):
    """One module edited since the twins were built: every twin of the group is left out (they
    build on one another), and the plugin would run the pure class."""
    _compiled()
    status = group_status_when_changed(native, monkeypatch, edited="generation_group.py")
    assert status["generation_group"] == "pure Python (stale: source changed)"
    assert status["executor"] == "pure Python (its group's generation_group not current)"


@pytest.mark.parametrize("config", [{}, {"kernel_time_scale": 1.1, "disable_overlap_scheduler": True},
                                    {"tensor_parallel_size": 2, "pipeline_parallel_size": 2},
                                    {"cuda_graph_padding": True}])
def test_the_compiled_pricer_prices_iterations_as_the_pure_one(config):
    """The step pricer, compiled and pure, on random iterations: prompt steps, decode-only
    iterations one at a time and a run at a time, work, bit for bit and type for type."""
    import random

    from labsim_llm.models import builtin_models
    from labsim_trtllm import pricing
    from labsim_trtllm.config import graph_sizes, resolve

    _compiled()
    assert plugin.TrtStepPricer is native.pricer() is not pricing.TrtStepPricer
    spec, gpu = builtin_models()["Llama-3.1-8B"], labsim.device("H100-SXM")
    cfg = resolve({"model": "Llama-3.1-8B", **config}, spec, gpu)

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return (0.5e-6 if algorithm == "custom_ar" else 1e-6) + nbytes / 1e11

    def cost(kind, nbytes, ranks, algorithm="auto"):
        return algorithm, collective(kind, nbytes, ranks, algorithm)

    pure, twin = (cls(spec, gpu, cfg, graph_sizes(cfg), collective=collective, collective_cost=cost)
                  for cls in (pricing.TrtStepPricer, native.pricer()))
    rng = random.Random(str(config))
    for _ in range(300):
        b = rng.choice([1, 2, 7, 32, 33, 64, 100, 128, 200])
        ctx = b * rng.randint(1, 3000) + rng.randint(0, b)
        chunks = tuple((rng.randint(1, 4096), rng.choice([0, rng.randint(1, 8192)]))
                       for _ in range(rng.choice([1, 1, 2])))
        nd = rng.choice([0, b])
        for name, args in (("step_time", (chunks, nd, ctx if nd else 0)), ("step_time", ((), b, ctx)),
                           ("gpu_time", (chunks, nd, ctx if nd else 0)), ("cpu_time", (chunks, nd)),
                           ("work", (chunks, nd, ctx if nd else 0)), ("decode_work", (b, ctx)),
                           ("uses_graph", ((), b))):
            assert exact_bits(getattr(twin, name)(*args)) == exact_bits(getattr(pure, name)(*args)), (name, args)
        assert exact_bits(twin.decode_price(b)(ctx)) == exact_bits(pure.decode_price(b)(ctx))
        assert exact_bits(twin.decode_gpu(b)(ctx)) == exact_bits(pure.decode_gpu(b)(ctx))
        runs = [p.decode_run(b) for p in (pure, twin)]
        assert exact_bits(runs[1][1:]) == exact_bits(runs[0][1:])
        count = rng.randint(1, 30)
        assert exact_bits(runs[1][0](ctx, count)) == exact_bits(runs[0][0](ctx, count))

"""Tensor and pipeline parallelism: the collectives are priced and change the step time."""

from __future__ import annotations

import labsim
import pytest
from labsim_llm.engine.step_cost import StepPricer
from labsim_llm.models import builtin_models


def experiment(rate, duration, vllm):
    """Poisson chat traffic (LogNormal 400-token prompts, 80-token outputs) into one vLLM."""
    profile = {"profile_name": "p", "request_rate": rate,
               "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 400, "sigma": 200,
                                             "is_int": True, "min": 4, "max": 1600},
               "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 80, "sigma": 40,
                                                 "is_int": True, "min": 2, "max": 320}}
    return {"simulation": {"random_seed": 3},
            "workload": {"total_duration": duration, "client_profiles": [profile]},
            "frameworks_to_test": [{"name": "v", "type": "vllm", "config": vllm}]}


def rows(result):
    return result.table("requests")


def _model(name):
    return builtin_models()[name]


def test_tensor_parallel_step_includes_two_all_reduces_per_layer():
    model, gpu = _model("Llama-3.1-70B"), labsim.device("H100-SXM")
    calls = []

    def collective(kind, nbytes, ranks):
        calls.append((kind, nbytes, ranks))
        return labsim.collective_time(kind, nbytes, ranks=ranks, device=gpu)

    tp4 = StepPricer(model, gpu, dtype="bf16", kv_dtype="bf16", tp=4, pp=1, collective=collective)
    free = StepPricer(model, gpu, dtype="bf16", kv_dtype="bf16", tp=4, pp=1,
                      collective=lambda kind, nbytes, ranks: 0.0)
    with_comm = tp4.step_time([(512, 0)], 32, 32 * 1024)
    without = free.step_time([(512, 0)], 32, 32 * 1024)
    assert with_comm > without
    # one activation all-reduce: (512 + 32) tokens × hidden × 2 bytes, across 4 ranks
    assert ("all_reduce", (512 + 32) * model.hidden_size * 2, 4) in calls
    per_call = labsim.collective_time("all_reduce", (512 + 32) * model.hidden_size * 2, ranks=4,
                                      device=gpu)
    expected = (2 * model.num_layers + 1) * per_call
    assert with_comm - without == pytest.approx(expected, rel=0.05)


def test_more_tensor_parallel_gpus_lower_tpot_for_a_large_model():
    cfg = {"model": "Llama-3.1-70B"}
    tp4 = labsim.run(_on_dgx(experiment(rate=1, duration=5, vllm={**cfg, "tensor_parallel_size": 4})))
    tp8 = labsim.run(_on_dgx(experiment(rate=1, duration=5, vllm={**cfg, "tensor_parallel_size": 8})))
    t4 = tp4.summary["frameworks"]["v"]["tpot_ms"]["p50"]
    t8 = tp8.summary["frameworks"]["v"]["tpot_ms"]["p50"]
    assert t8 < t4 < 2 * t8  # faster, but all-reduces keep it from halving
    assert tp8.summary["frameworks"]["v"]["gpu"]["num_gpus"] == 8


def test_pipeline_parallel_serves_every_request_and_pays_the_stage_hand_offs():
    base = experiment(rate=2, duration=5, vllm={"model": "Llama-3.1-70B", "tensor_parallel_size": 4})
    pp = experiment(rate=2, duration=5, vllm={"model": "Llama-3.1-70B", "tensor_parallel_size": 4,
                                              "pipeline_parallel_size": 2})
    one, two = labsim.run(_on_dgx(base)), labsim.run(_on_dgx(pp))
    assert all(r["status"] == "finished" for r in rows(two))
    assert len(rows(one)) == len(rows(two))
    s = two.summary["frameworks"]["v"]
    assert s["gpu"]["num_gpus"] == 8
    # each GPU holds half the layers, so the KV cache holds more tokens than at PP=1
    assert s["kv_cache"]["capacity_blocks_per_replica"] > \
        one.summary["frameworks"]["v"]["kv_cache"]["capacity_blocks_per_replica"]


def _on_dgx(config):
    config["hardware_profile"] = {"device": "H100-SXM", "topology": "dgx-h100"}
    return config

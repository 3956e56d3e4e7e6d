"""TensorRT-LLM pipeline parallelism: up to pp micro-batches in flight (PyExecutor._executor_loop_pp)."""

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def experiment(n, trt, prompt=512, output=128, rate=1e6):
    profile = {"profile_name": "p", "request_rate": rate,
               "prompt_tokens_dist_config": {"type": "Constant", "value": prompt, "is_int": True},
               "max_output_tokens_dist_config": {"type": "Constant", "value": output, "is_int": True}}
    return {"simulation": {"random_seed": 3}, "hardware_profile": {"device": "H100-SXM"},
            "workload": {"num_requests": n, "client_profiles": [profile]},
            "frameworks_to_test": [{"name": "t", "type": "trtllm", "config": {"model": "Llama-3.1-8B", **trt}}]}


def test_micro_batches_overlap_and_raise_throughput():
    one = labsim.run(experiment(400, {})).summary["frameworks"]["t"]
    two_run = labsim.run(experiment(400, {"pipeline_parallel_size": 2}))
    two = two_run.summary["frameworks"]["t"]
    assert two["requests"]["finished"] == 400
    assert two["throughput"]["output_tokens_per_s"] > 1.5 * one["throughput"]["output_tokens_per_s"]
    assert two["gpu"]["busy_fraction"] <= 1.0 and two["gpu"]["mfu"] > 0.75 * one["gpu"]["mfu"]
    steps = sorted((r["start_s"], r["start_s"] + r["duration_s"]) for r in two_run.table("steps"))
    assert any(b[0] < a[1] for a, b in zip(steps, steps[1:]))


def test_a_request_is_in_one_micro_batch_at_a_time():
    """With one request the micro-batches run one after another: no step starts before the
    previous ends, and the request's tokens come one per step."""
    result = labsim.run(experiment(1, {"pipeline_parallel_size": 4}))
    steps = result.table("steps")
    for a, b in zip(steps, steps[1:]):
        assert b["start_s"] >= a["start_s"] + a["duration_s"] - 1e-12
    assert len(steps) == 128 and result.table("requests")[0]["output_tokens"] == 128


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(5, 200), pp=st.sampled_from([2, 3, 4]),
       policy=st.sampled_from(["GUARANTEED_NO_EVICT", "MAX_UTILIZATION"]),
       chunked=st.booleans(), reuse=st.booleans())
def test_pipeline_conservation_under_memory_pressure(rate, pp, policy, chunked, reuse):
    cfg = experiment(120, {"pipeline_parallel_size": pp, "capacity_scheduler_policy": policy,
                           "enable_chunked_prefill": chunked, "enable_block_reuse": reuse,
                           "kv_cache_max_tokens": 12000, "max_seq_len": 4096, "max_num_tokens": 4096},
                     prompt=900, output=200, rate=rate)
    result = labsim.run(cfg)
    table = result.table("requests")
    assert len({r["request_id"] for r in table}) == len(table) == 120
    assert all(r["status"] == "finished" for r in table)
    s = result.summary["frameworks"]["t"]
    assert max(r["kv_blocks_used"] for r in result.table("steps")) <= s["kv_cache"]["capacity_blocks_per_replica"]
    assert s["gpu"]["busy_fraction"] <= 1.0 + 1e-9
    if policy == "GUARANTEED_NO_EVICT":
        assert s["preemption"]["total"] == 0


@pytest.mark.parametrize("pp", [2, 4])
def test_runs_are_deterministic(pp):
    cfg = experiment(60, {"pipeline_parallel_size": pp}, rate=30)
    assert repr(labsim.run(cfg).table("requests")) == repr(labsim.run(cfg).table("requests"))

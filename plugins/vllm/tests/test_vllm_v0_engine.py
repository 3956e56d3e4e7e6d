"""``engine_version: v0``: vLLM 0.6's V0 scheduler and its asynchronous output processing."""

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim.errors import LabsimError
from labsim_vllm.config import resolve


def experiment(rate=20.0, duration=3.0, prompt=500, output=100, vllm=None, wl=None, seed=7):
    prof = {"profile_name": "p", "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                          "is_int": True, "min": 4, "max": 3 * prompt},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output, "sigma": output / 2,
                                              "is_int": True, "min": 2, "max": 3 * output}}
    workload = {"type": "client_profiles", "total_duration": duration, "client_profiles": [prof], **(wl or {})}
    return {
        "name": "v0", "simulation": {"max_simulation_time": 3600, "random_seed": seed},
        "hardware_profile": {"device": "A100-SXM4-80GB"},
        "workload": workload,
        "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {
            "model": "Llama-3.1-8B", "engine_version": "v0", "max_model_len": 4096, **(vllm or {})}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.99]},
    }


TIGHT = {"gpu_memory_utilization": 0.24}


class _Device:
    name = "H100-SXM"
    memory_bytes = 80 * 2**30


class _Model:
    max_position_embeddings = 131072
    dtype_default = "bf16"


def test_v0_defaults_are_vllm_0_6s():
    cfg = resolve({"model": "m", "engine_version": "v0", "max_model_len": 4096}, _Model(), _Device())
    assert (cfg["max_num_seqs"], cfg["max_num_batched_tokens"]) == (256, 4096)
    assert cfg["enable_chunked_prefill"] is False and cfg["enable_prefix_caching"] is False
    assert cfg["async_output_processing"] is True
    # above a 32 K context the 0.6 server chunks, with a 512-token budget
    long = resolve({"model": "m", "engine_version": "v0"}, _Model(), _Device())
    assert long["enable_chunked_prefill"] is True and long["max_num_batched_tokens"] == 512
    v1 = resolve({"model": "m"}, _Model(), _Device())
    assert (v1["max_num_seqs"], v1["max_num_batched_tokens"]) == (1024, 8192)
    assert v1["enable_chunked_prefill"] and v1["enable_prefix_caching"]
    assert v1["async_output_processing"] is False


def test_async_output_processing_is_refused_on_v1():
    cfg = experiment()
    cfg["frameworks_to_test"][0]["config"].update(engine_version="v1", async_output_processing=True)
    with pytest.raises(LabsimError, match="async_output_processing"):
        labsim.run(cfg)


def test_prompts_run_in_steps_of_their_own():
    result = labsim.run(experiment())
    steps = result.table("steps")
    assert any(s["num_prefills"] for s in steps) and any(s["num_decodes"] for s in steps)
    assert not any(s["num_prefills"] and s["num_decodes"] for s in steps)
    v1 = experiment()
    v1["frameworks_to_test"][0]["config"]["engine_version"] = "v1"
    assert any(s["num_prefills"] and s["num_decodes"] for s in labsim.run(v1).table("steps"))


def test_outputs_reach_the_client_when_the_next_step_ends():
    lag = labsim.run(experiment(rate=5, vllm={"frontend_latency": False}))
    now = labsim.run(experiment(rate=5, vllm={"frontend_latency": False, "async_output_processing": False}))
    ends = sorted(s["start_s"] + s["duration_s"] for s in lag.table("steps"))
    late, early = lag.table("requests"), now.table("requests")
    assert [r["request_id"] for r in late] == [r["request_id"] for r in early]
    for a, b in zip(late, early):
        # the same schedule (open loop), each first token one step later: at the next step's end
        assert a["first_scheduled_s"] == b["first_scheduled_s"]
        nxt = next(t for t in ends if t > b["first_token_s"] + 1e-12)
        assert a["first_token_s"] == pytest.approx(nxt, abs=1e-9)
        assert a["finish_s"] >= b["finish_s"]     # equal when no step follows: the engine idles
    assert sum(a["finish_s"] > b["finish_s"] for a, b in zip(late, early)) > len(late) // 2
    assert lag.summary["frameworks"]["v"]["tpot_ms"]["p50"] == pytest.approx(
        now.summary["frameworks"]["v"]["tpot_ms"]["p50"], rel=0.02)


def test_prompts_wait_for_the_watermark_and_fcfs_head():
    """A V0 step admits the head of the queue or nobody: later, smaller prompts do not pass it."""
    # (no API-server cost: it would reorder arrivals at the engine by prompt length)
    result = labsim.run(experiment(rate=200, duration=0.5, prompt=1500, output=300,
                                   vllm={**TIGHT, "frontend_latency": False}))
    table = result.table("requests")
    assert result.summary["frameworks"]["v"]["preemption"]["total"] > 0
    served = sorted((r for r in table if r["status"] == "finished"), key=lambda r: r["arrival_s"])
    starts = [r["first_scheduled_s"] for r in served]
    assert len(served) > 50 and starts == sorted(starts)
    steps = result.table("steps")
    cap = result.summary["frameworks"]["v"]["kv_cache"]["capacity_blocks_per_replica"]
    # a prompt step leaves the watermark (1 % of the blocks) free
    assert all(s["kv_blocks_used"] <= cap - int(0.01 * cap) for s in steps if s["num_prefills"])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(2, 60), prompt=st.integers(16, 1100), output=st.integers(2, 200),
       steps=st.sampled_from([1, 4, 10]), concurrency=st.sampled_from([None, 3, 16]))
def test_every_request_finishes_once_within_kv_capacity(rate, prompt, output, steps, concurrency):
    # lengths are drawn up to 3× their mean: 3 × (1100 + 200) stays within max_model_len 4096, so none is refused
    wl = {"concurrency": concurrency, "num_requests": 40} if concurrency else None
    result = labsim.run(experiment(rate=rate, duration=1.5, prompt=prompt, output=output, wl=wl,
                                   vllm={**TIGHT, "num_scheduler_steps": steps}))
    table = result.table("requests")
    assert len({r["request_id"] for r in table}) == len(table)
    assert all(r["status"] == "finished" for r in table)
    for r in table:
        assert r["arrival_s"] <= r["first_scheduled_s"] < r["first_token_s"] <= r["finish_s"]
    cap = result.summary["frameworks"]["v"]["kv_cache"]["capacity_blocks_per_replica"]
    assert max(s["kv_blocks_used"] for s in result.table("steps")) <= cap


def test_pipeline_parallelism_turns_async_output_processing_off():
    """vLLM 0.6-0.7 (ModelConfig.verify_async_output_proc) disables it under PP."""
    cfg = resolve({"model": "m", "engine_version": "v0", "max_model_len": 4096, "pipeline_parallel_size": 2},
                  _Model(), _Device())
    assert cfg["async_output_processing"] is False
    bad = experiment()
    bad["frameworks_to_test"][0]["config"].update(pipeline_parallel_size=2, async_output_processing=True)
    with pytest.raises(LabsimError, match="pipeline parallelism"):
        labsim.run(bad)

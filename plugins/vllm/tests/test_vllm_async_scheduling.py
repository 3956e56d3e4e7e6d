"""``async_scheduling: true`` (vLLM --async-scheduling): the next step is formed while the GPU runs
the current one — its CPU work hidden, and a request reaching a busy engine starts a step later."""

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim.errors import LabsimError


def run(tmp_path, rows, **vllm):
    """Replay *rows* (arrival s, prompt tokens, output tokens) into one vLLM on an H100."""
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,prompt_tokens,output_tokens\n" + "".join(f"{t},{p},{o}\n" for t, p, o in rows))
    return labsim.run({
        "simulation": {"random_seed": 1}, "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "trace", "path": str(path)},
        "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {
            "model": "Llama-3.1-8B", "frontend_latency": False, **vllm}}]})


def test_the_step_cpu_work_is_hidden_behind_the_gpu(tmp_path):
    sync = run(tmp_path, [(0, 200, 50)], fast_forward=False).table("steps")     # one row per step
    fast = run(tmp_path, [(0, 200, 50)], async_scheduling=True).table("steps")
    assert len(sync) == len(fast) == 50
    overhead = 5e-4 + 8e-6      # step_overhead_s + step_overhead_per_request_s × 1 request
    for a, b in zip(sync, fast):
        assert b["duration_s"] == pytest.approx(a["duration_s"] - overhead, abs=1e-9)


def test_a_request_reaching_a_busy_engine_starts_one_step_later(tmp_path):
    rows = [(0, 200, 400), (1.0, 100, 20)]           # the second arrives while the first decodes
    sync, fast = run(tmp_path, rows), run(tmp_path, rows, async_scheduling=True)

    def first_step_with_two(result):
        return next(i for i, s in enumerate(result.table("steps")) if s["num_prefills"] == 1 and i > 0)

    def start_of_step_after_arrival(result):
        return next(i for i, s in enumerate(result.table("steps")) if s["start_s"] >= 1.0)

    assert first_step_with_two(sync) == start_of_step_after_arrival(sync)
    assert first_step_with_two(fast) == start_of_step_after_arrival(fast) + 1
    second = [r for r in fast.table("requests") if r["request_id"] == 1][0]
    assert second["first_scheduled_s"] > 1.0


def test_an_idle_engine_starts_a_request_at_once(tmp_path):
    rows = [(0, 200, 5), (1.0, 100, 5)]               # the first is long done when the second arrives
    for result in (run(tmp_path, rows), run(tmp_path, rows, async_scheduling=True)):
        second = [r for r in result.table("requests") if r["request_id"] == 1][0]
        assert second["first_scheduled_s"] == pytest.approx(1.0)


def test_everything_finishes_and_throughput_rises_at_saturation(tmp_path):
    rows = [(0, 512, 128)] * 300
    sync, fast = run(tmp_path, rows), run(tmp_path, rows, async_scheduling=True)
    s_sync, s_fast = sync.summary["frameworks"]["v"], fast.summary["frameworks"]["v"]
    assert s_fast["requests"]["finished"] == 300
    gain = s_fast["throughput"]["output_tokens_per_s"] / s_sync["throughput"]["output_tokens_per_s"]
    assert 1.0 < gain < 1.15


@pytest.mark.parametrize("extra, match", [({"engine_version": "v0"}, "v1 feature"),
                                          ({"pipeline_parallel_size": 2}, "pipeline_parallel_size")])
def test_combinations_vllm_refuses(tmp_path, extra, match):
    with pytest.raises(LabsimError, match=match):
        run(tmp_path, [(0, 10, 5)], async_scheduling=True, **extra)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(5, 300), prompt=st.integers(16, 800), output=st.integers(2, 200), caching=st.booleans())
def test_every_request_finishes_once_within_kv_capacity(rate, prompt, output, caching):
    profile = {"profile_name": "p", "request_rate": rate,
               "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                             "is_int": True, "min": 4, "max": 4 * prompt},
               "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output, "sigma": output / 2,
                                                 "is_int": True, "min": 2, "max": 4 * output}}
    result = labsim.run({
        "simulation": {"random_seed": 2}, "hardware_profile": {"device": "H100-SXM"},
        "workload": {"num_requests": 120, "client_profiles": [profile]},
        "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {
            "model": "Llama-3.1-8B", "async_scheduling": True, "gpu_memory_utilization": 0.24,
            "max_model_len": 4096, "enable_prefix_caching": caching}}]})
    table = result.table("requests")
    assert len({r["request_id"] for r in table}) == len(table) == 120
    assert all(r["status"] == "finished" for r in table)
    cap = result.summary["frameworks"]["v"]["kv_cache"]["capacity_blocks_per_replica"]
    assert max(r["kv_blocks_used"] for r in result.table("steps")) <= cap

"""End-to-end runs of the vLLM framework: conservation, memory, preemption, caching, equivalence."""

import copy

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim.errors import ConfigError, LabsimError
from labsim_llm.workloads.turns import consecutive_turns
from labsim_vllm.plugin import VLLM


def experiment(rate=8.0, duration=6.0, prompt=400, output=80, vllm=None, profile=None, wl=None,
               seed=3):
    prof = {"profile_name": "p", "weight": 1.0, "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                          "is_int": True, "min": 4, "max": 4 * prompt},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output,
                                              "sigma": output / 2, "is_int": True, "min": 2,
                                              "max": 4 * output}}
    prof.update(profile or {})
    workload = {"type": "client_profiles", "total_duration": duration, "client_profiles": [prof]}
    workload.update(wl or {})
    return {
        "name": "t", "simulation": {"max_simulation_time": 3600, "random_seed": seed},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": workload,
        "frameworks_to_test": [{"name": "v", "type": "vllm",
                                "config": {"model": "Llama-3.1-8B", **(vllm or {})}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.99]},
    }


def rows(result):
    return result.table("requests")


TIGHT = {"gpu_memory_utilization": 0.24, "max_model_len": 4096}   # a few thousand KV blocks


def test_registered_with_schemas():
    assert labsim.get_registry().get("frameworks", "vLLM") is VLLM
    assert "max_num_seqs" in VLLM.config_schema["properties"]
    assert "ttft_ms" in VLLM.summary_schema["properties"]


def test_every_request_finishes_once_and_summary_contract():
    result = labsim.run(experiment())
    table = rows(result)
    ids = [r["request_id"] for r in table]
    assert len(ids) == len(set(ids)) and len(ids) > 20
    assert all(r["status"] == "finished" for r in table)
    s = result.summary["frameworks"]["v"]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert set(s[key]) >= {"mean", "p50", "p99"}
    assert s["throughput"]["requests_per_s"] > 0
    for r in table:
        assert r["arrival_s"] <= r["first_scheduled_s"] <= r["first_token_s"] <= r["finish_s"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(2, 40), prompt=st.integers(16, 800), output=st.integers(2, 200),
       block=st.sampled_from([8, 16, 32]), caching=st.booleans())
def test_conservation_property(rate, prompt, output, block, caching):
    """Whatever the load and memory, each request leaves exactly once, all finished."""
    # lengths reach 4× their mean: 4 × (800 + 200) fits a 4096-token context, so no request is refused
    cfg = experiment(rate=rate, duration=2.0, prompt=prompt, output=output,
                     vllm={**TIGHT, "block_size": block, "enable_prefix_caching": caching})
    result = labsim.run(cfg)
    table = rows(result)
    assert len({r["request_id"] for r in table}) == len(table)
    assert all(r["status"] == "finished" for r in table)
    cap = result.summary["frameworks"]["v"]["kv_cache"]["capacity_blocks_per_replica"]
    assert max(r["kv_blocks_used"] for r in result.table("steps")) <= cap


def test_preemption_under_memory_pressure_and_requests_still_finish():
    cfg = experiment(rate=200, duration=0.4, prompt=1500, output=600, vllm=TIGHT)
    result = labsim.run(cfg)
    s = result.summary["frameworks"]["v"]
    assert s["preemption"]["total"] > 0
    assert all(r["status"] == "finished" for r in rows(result))
    assert any(r["preemptions"] > 0 for r in rows(result))


def test_prefix_caching_raises_hit_rate_and_lowers_ttft():
    conv = {"conversational_probability": 0.9, "system_prompt_tokens": 1024,
            "think_time_dist_config": {"type": "Exponential", "mean": 0.5}}
    on = labsim.run(experiment(rate=6, duration=8, profile=conv))
    off = labsim.run(experiment(rate=6, duration=8, profile=conv,
                                vllm={"enable_prefix_caching": False}))
    s_on, s_off = on.summary["frameworks"]["v"], off.summary["frameworks"]["v"]
    assert s_on["prefix_cache"]["hit_rate"] > 0.3
    assert s_off["prefix_cache"]["hit_rate"] == 0
    assert s_on["ttft_ms"]["mean"] < s_off["ttft_ms"]["mean"]


def test_requests_longer_than_max_model_len_are_rejected():
    result = labsim.run(experiment(prompt=900, vllm={"max_model_len": 1000}))
    table = rows(result)
    rejected = [r for r in table if r["status"] == "rejected"]
    assert rejected and all(r["reject_reason"] == "exceeds_max_model_len" for r in rejected)
    assert all(r["prompt_tokens"] + r["output_tokens"] <= 1000 or r["status"] == "rejected"
               for r in table)
    s = result.summary["frameworks"]["v"]["requests"]
    assert s["rejected"] == len(rejected)


def test_same_seed_same_summary():
    a = labsim.run(experiment(vllm=TIGHT, rate=30))
    b = labsim.run(experiment(vllm=TIGHT, rate=30))
    assert a.summary["frameworks"] == b.summary["frameworks"]


@pytest.mark.parametrize("extra", [{}, TIGHT, {"num_replicas": 2, "router": "least_outstanding"},
                                   {"num_scheduler_steps": 8},
                                   {**TIGHT, "engine_version": "v0", "num_scheduler_steps": 8}])
def test_fast_forward_equals_one_event_per_step(extra):
    base = experiment(rate=25, duration=3, prompt=600, output=150, vllm=extra)
    slow = copy.deepcopy(base)
    slow["frameworks_to_test"][0]["config"]["fast_forward"] = False
    fast_rows, slow_rows = rows(labsim.run(base)), rows(labsim.run(slow))
    assert fast_rows == slow_rows
    f = labsim.run(base).summary["frameworks"]["v"]
    s = labsim.run(slow).summary["frameworks"]["v"]
    for key in ("ttft_ms", "tpot_ms", "e2e_ms", "throughput", "requests", "preemption"):
        assert f[key] == s[key]
    assert f["itl_ms"]["p50"] == s["itl_ms"]["p50"]
    assert f["itl_ms"]["mean"] == pytest.approx(s["itl_ms"]["mean"], rel=1e-12)
    assert f["gpu"]["steps"] == s["gpu"]["steps"]


def test_model_that_does_not_fit_names_the_field():
    cfg = experiment()
    cfg["frameworks_to_test"][0]["config"]["model"] = "Llama-3.1-70B"
    with pytest.raises(LabsimError, match="tensor_parallel_size"):
        labsim.run(cfg)


def test_bad_option_is_a_config_error():
    with pytest.raises(ConfigError, match="max_num_seqs"):
        labsim.run(experiment(vllm={"max_num_seqs": 0}))


def test_multi_step_scheduling_makes_arrivals_wait_for_the_round():
    single = rows(labsim.run(experiment(rate=6, duration=8)))
    multi = rows(labsim.run(experiment(rate=6, duration=8, vllm={"num_scheduler_steps": 10})))
    ttft = lambda rs: sorted(r["ttft_ms"] for r in rs)[len(rs) // 2]  # noqa: E731
    assert len(single) == len(multi)
    assert ttft(multi) > ttft(single) * 1.2  # new requests wait up to 9 decode steps


def test_frontend_latency_adds_the_api_server_cost():
    from labsim_llm.engine.frontend import DEFAULT_FRONTEND

    on = rows(labsim.run(experiment(rate=1.0)))
    off = rows(labsim.run(experiment(rate=1.0, vllm={"frontend_latency": False})))
    for a, b in zip(on, off):
        extra = DEFAULT_FRONTEND.before_engine(a["prompt_tokens"]) + DEFAULT_FRONTEND.after_first_token()
        assert a["ttft_ms"] == pytest.approx(b["ttft_ms"] + extra * 1e3, rel=0.05)
        assert a["tpot_ms"] == pytest.approx(b["tpot_ms"], rel=0.05)


def test_a_follow_up_turn_hits_the_previous_answer_blocks():
    """vLLM caches every full block, generated ones too: the next turn of a conversation
    finds the previous prompt *and answer* in the cache (all but the last partial block)."""
    conv = {"conversational_probability": 1.0, "max_turns": 2,
            "think_time_dist_config": {"type": "Constant", "value": 0.2}}
    pairs = consecutive_turns(rows(labsim.run(experiment(rate=2, duration=6, profile=conv))))
    assert len(pairs) > 5
    for first, second in pairs:
        carried = first["prompt_tokens"] + first["output_tokens"] - 1   # KV computed for turn 0
        assert second["cached_prompt_tokens"] == carried // 16 * 16


def test_a_preempted_request_finds_its_own_output_blocks_again(monkeypatch, pure_replica):
    """Back from a preemption, a request may hit blocks of the tokens it had generated."""
    from labsim_vllm.scheduler import Replica

    resumed = []
    start = Replica._start

    def spy(self, seq, hits, need, n, running, entries):
        if seq.req.preemptions:
            resumed.append((len(hits) * self.block_size, seq.req.prompt_tokens))
        return start(self, seq, hits, need, n, running, entries)

    monkeypatch.setattr(Replica, "_start", spy)
    labsim.run(experiment(rate=60, duration=2, prompt=600, output=400,
                          vllm={"gpu_memory_utilization": 0.22, "max_model_len": 4096}))
    assert resumed
    assert any(hit > prompt for hit, prompt in resumed)


def test_gpu_kv_and_cache_figures_cover_the_time_after_the_warm_up():
    w = 2.0
    cfg = experiment(rate=8, duration=6, profile={"conversational_probability": 0.5,
                                                  "think_time_dist_config": {"type": "Constant",
                                                                             "value": 0.3}})
    cfg["metrics_config"]["warm_up_duration_s"] = w
    result = labsim.run(cfg)
    s = result.summary["frameworks"]["v"]
    steps = result.table("steps")
    busy = sum(max(0.0, min(r["duration_s"], r["start_s"] + r["duration_s"] - w)) for r in steps)
    assert s["gpu"]["busy_fraction"] == pytest.approx(busy / (result.summary["simulated_time_s"] - w))
    peak = max(r["kv_blocks_used"] for r in steps if r["start_s"] + r["duration_s"] > w)
    assert s["kv_cache"]["peak_utilization"] == pytest.approx(peak / s["kv_cache"]["capacity_blocks_per_replica"])
    kept = [r for r in rows(result) if r["arrival_s"] >= w and r["status"] == "finished"]
    assert s["prefix_cache"]["hit_tokens"] == sum(r["cached_prompt_tokens"] for r in kept) > 0


def test_an_encoder_model_is_refused_for_generation():
    with pytest.raises(ConfigError, match="BERT-Base.*encoder.*decoder"):
        labsim.run(experiment(vllm={"model": "BERT-Base"}))


def test_steps_table_is_capped_with_a_warning():
    from structlog.testing import capture_logs

    whole = labsim.run(experiment(duration=2.0))
    assert len(whole.table("steps")) > 20                      # small runs: every step, as before
    with capture_logs() as logs:
        capped = labsim.run(experiment(duration=2.0, vllm={"max_step_rows": 20}))
    assert len(capped.table("steps")) == 20
    assert capped.table("steps") == whole.table("steps")[:20]
    warning = next(e for e in logs if e["event"] == "steps_table_truncated")
    assert warning["rows_left_out"] == len(whole.table("steps")) - 20
    assert capped.summary["frameworks"] == whole.summary["frameworks"]   # the answer is unchanged


def test_flash_attention_2_kernels_price_decode_where_the_profile_prices_the_bare_kernel(
        monkeypatch):
    """vLLM v1 runs FlashAttention-2 on Ampere and Ada, FA3 on Hopper. FA2's layout copies and
    split combine (kernels.DECODE_KERNELS) are added where the profile prices the
    attention kernel alone (cross-generation, datasheet-only), not to a calibrated profile,
    whose fitted costs hold them; V0 is priced without them."""
    import labsim_vllm.plugin as vllm_plugin
    from labsim_vllm.attention import attention_device

    gpus = {name: labsim.device(name) for name in ("A100-SXM4-80GB", "L4", "H100-SXM", "B200")}
    gpus["A100 datasheet-only"] = gpus["A100-SXM4-80GB"].datasheet_only()
    chosen = {name: attention_device(gpu, {"engine_version": "v1"}).params.decode_gqa_copies
              for name, gpu in gpus.items()}
    assert chosen == {"A100-SXM4-80GB": 0.0, "L4": 2.0, "H100-SXM": 0.0, "B200": 0.0,
                      "A100 datasheet-only": 2.0}
    l4 = gpus["L4"]
    assert attention_device(l4, {"engine_version": "v0"}) is l4

    exp = experiment(rate=2.0, duration=4.0, vllm={"max_model_len": 4096})
    exp["hardware_profile"] = {"device": "L4"}
    with_fa2 = labsim.run(exp).summary["frameworks"]["v"]["tpot_ms"]["p50"]
    monkeypatch.setattr(vllm_plugin, "attention_device", lambda device, cfg: device)
    without = labsim.run(exp).summary["frameworks"]["v"]["tpot_ms"]["p50"]
    # 32 layers x a few microseconds of extra kernels on a step of tens of milliseconds
    assert without < with_fa2 < 1.05 * without


def _asked_engine(vllm_cfg=None, limits=True):
    """A built vLLM engine whose reject_reason calls are counted (and, *limits* False, with no
    admit_limits: the default of an engine that only overrides reject_reason)."""
    from labsim.orchestrator import Orchestrator, load_experiment

    fw = Orchestrator(load_experiment(experiment(vllm=vllm_cfg or {})))._build([])[3][0]
    asked = []
    own = fw.reject_reason

    def counted(request):
        asked.append(request.request_id)
        return own(request)

    fw.reject_reason = counted
    if not limits:
        fw.admit_limits = lambda: None
    return fw, asked


def test_requests_within_admit_limits_are_admitted_without_asking_reject_reason():
    """ServingEngine.submit admits a request inside the engine's admit_limits without the
    (interpreted) reject_reason call, asks it for every other, and rejects exactly the requests
    reject_reason rejects; an engine without admit_limits is asked for every request."""
    from labsim_llm.request import Request

    for limits in (True, False):
        fw, asked = _asked_engine({"max_model_len": 2048}, limits)
        requests = [Request(i, 0.0, prompt, total - prompt, total - prompt, ((i, prompt),))
                    for i, (prompt, total) in enumerate(
                        (p, t) for t in (10, 2046, 2047, 2048, 2049, 2050, 5000)
                        for p in (1, t // 2, t - 1))]
        for r in requests:
            fw.submit(r)
        too_long = [r.request_id for r in requests if r.prompt_tokens + r.max_output_tokens > 2048]
        assert [r.request_id for r in requests if r.status == "rejected"] == too_long
        assert {r.reject_reason for r in requests if r.status == "rejected"} == {"exceeds_max_model_len"}
        assert asked == (too_long if limits else [r.request_id for r in requests])

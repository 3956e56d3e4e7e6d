"""End-to-end runs of the TensorRT-LLM framework: conservation, capacity policies, reuse, FP8,
determinism, and a side-by-side run with vLLM."""

import copy

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labsim.errors import ConfigError, LabsimError
from labsim_llm.workloads.turns import consecutive_turns
from labsim_trtllm.plugin import TensorRTLLM


def experiment(rate=8.0, duration=6.0, prompt=400, output=80, trt=None, profile=None, seed=3,
               device="H100-SXM", model="Llama-3.1-8B", frameworks=None):
    prof = {"profile_name": "p", "weight": 1.0, "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": prompt, "sigma": prompt / 2,
                                          "is_int": True, "min": 4, "max": 4 * prompt},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": output,
                                              "sigma": output / 2, "is_int": True, "min": 2,
                                              "max": 4 * output}}
    prof.update(profile or {})
    return {
        "name": "t", "simulation": {"max_simulation_time": 3600, "random_seed": seed},
        "hardware_profile": {"device": device},
        "workload": {"type": "client_profiles", "total_duration": duration, "client_profiles": [prof]},
        "frameworks_to_test": frameworks or [{"name": "t", "type": "trtllm",
                                              "config": {"model": model, **(trt or {})}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.99]},
    }


def rows(result):
    return result.table("requests")


#: a few hundred KV blocks of 32 tokens, so memory runs out
TIGHT = {"kv_cache_max_tokens": 12000, "max_seq_len": 4096}


def section(result, name="t"):
    return result.summary["frameworks"][name]


def test_registered_with_schemas():
    assert labsim.get_registry().get("frameworks", "trtllm") is TensorRTLLM
    assert labsim.get_registry().get("frameworks", "TensorRT-LLM") is TensorRTLLM
    assert "capacity_scheduler_policy" in TensorRTLLM.config_schema["properties"]
    assert "ttft_ms" in TensorRTLLM.summary_schema["properties"]


def test_defaults_follow_trtllm_serve():
    s = section(labsim.run(experiment(duration=1)))
    cfg = s["config"]
    assert (cfg["max_batch_size"], cfg["max_num_tokens"], cfg["tokens_per_block"]) == (2048, 8192, 32)
    assert cfg["capacity_scheduler_policy"] == "GUARANTEED_NO_EVICT"
    assert cfg["enable_block_reuse"] and not cfg["enable_chunked_prefill"]
    assert not cfg["disable_overlap_scheduler"]
    assert cfg["cuda_graph_batch_sizes"] == [*range(1, 33), 64, 128]
    plan = cfg["memory_plan"]
    free = plan["total_bytes"] - plan["weight_bytes"] - plan["activation_bytes"] - \
        plan["non_torch_bytes"] - plan["cuda_graph_bytes"]
    assert plan["kv_bytes"] == pytest.approx(0.9 * free)
    assert plan["num_blocks"] == int(plan["kv_bytes"] // plan["block_bytes"])


def test_every_request_finishes_once_and_summary_contract():
    result = labsim.run(experiment())
    table = rows(result)
    ids = [r["request_id"] for r in table]
    assert len(ids) == len(set(ids)) and len(ids) > 20
    assert all(r["status"] == "finished" for r in table)
    s = section(result)
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert set(s[key]) >= {"mean", "p50", "p99"}
    for r in table:
        assert r["arrival_s"] <= r["first_scheduled_s"] <= r["first_token_s"] <= r["finish_s"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(2, 60), prompt=st.integers(16, 800), output=st.integers(2, 200),
       policy=st.sampled_from(["GUARANTEED_NO_EVICT", "MAX_UTILIZATION"]),
       chunked=st.booleans(), reuse=st.booleans(), overlap=st.booleans(),
       block=st.sampled_from([16, 32, 64]))
def test_conservation_property(rate, prompt, output, policy, chunked, reuse, overlap, block):
    """Whatever the load, memory and policy, each request leaves exactly once, all finished."""
    # lengths reach 4× their mean: 4 × (800 + 200) fits a 4096-token context, so no request is refused
    cfg = experiment(rate=rate, duration=2.0, prompt=prompt, output=output,
                     trt={**TIGHT, "capacity_scheduler_policy": policy, "tokens_per_block": block,
                          "enable_chunked_prefill": chunked, "enable_block_reuse": reuse,
                          "disable_overlap_scheduler": not overlap, "max_num_tokens": 4096})
    result = labsim.run(cfg)
    table = rows(result)
    assert len({r["request_id"] for r in table}) == len(table)
    assert all(r["status"] == "finished" for r in table), {r["status"] for r in table}
    s = section(result)
    assert s["requests"]["finished"] == len(table)
    cap = s["kv_cache"]["capacity_blocks_per_replica"]
    assert max(r["kv_blocks_used"] for r in result.table("steps")) <= cap
    if policy == "GUARANTEED_NO_EVICT":
        assert s["preemption"]["total"] == 0


def test_guaranteed_no_evict_reserves_whole_outputs_and_never_preempts():
    cfg = experiment(rate=200, duration=0.4, prompt=1500, output=600, trt=TIGHT)
    result = labsim.run(cfg)
    s = section(result)
    assert s["preemption"]["total"] == 0
    assert all(r["status"] == "finished" and r["preemptions"] == 0 for r in rows(result))
    cap = s["kv_cache"]["capacity_blocks_per_replica"]
    # whole-lifetime reservations: the running requests' prompt + max output (+1 overlap token)
    # never exceed the cache, so concurrency stays far below what the blocks in use suggest
    tpb = s["config"]["tokens_per_block"]
    table = rows(result)
    steps = result.table("steps")
    needs = [-(-(r["prompt_tokens"] + r["output_tokens"] + 1) // tpb) for r in table]
    most = 0
    for step in steps:
        t = step["start_s"]
        live = [r for r in table if r["first_scheduled_s"] <= t < r["finish_s"]]
        need = sum(-(-(r["prompt_tokens"] + r["output_tokens"] + 1) // tpb) for r in live)
        assert need <= cap + max(needs)          # a finishing request's blocks are freed a step late
        most = max(most, len(live))
    assert most <= cap // min(needs) + 1


def test_max_utilization_pauses_under_pressure_and_still_finishes_all():
    cfg = experiment(rate=200, duration=0.4, prompt=1500, output=600,
                     trt={**TIGHT, "capacity_scheduler_policy": "MAX_UTILIZATION"})
    result = labsim.run(cfg)
    s = section(result)
    assert s["preemption"]["total"] > 0
    assert all(r["status"] == "finished" for r in rows(result))
    assert any(r["preemptions"] > 0 for r in rows(result))
    gne = section(labsim.run(experiment(rate=200, duration=0.4, prompt=1500, output=600, trt=TIGHT)))
    assert s["kv_cache"]["peak_utilization"] > gne["kv_cache"]["peak_utilization"]


def test_block_reuse_raises_hit_rate_and_lowers_ttft():
    conv = {"conversational_probability": 0.9, "system_prompt_tokens": 1024,
            "think_time_dist_config": {"type": "Exponential", "mean": 0.5}}
    on = section(labsim.run(experiment(rate=6, duration=8, profile=conv)))
    off = section(labsim.run(experiment(rate=6, duration=8, profile=conv,
                                        trt={"enable_block_reuse": False})))
    assert on["prefix_cache"]["hit_rate"] > 0.3
    assert off["prefix_cache"]["hit_rate"] == 0
    assert on["ttft_ms"]["mean"] < off["ttft_ms"]["mean"]


def test_fp8_rejected_without_fp8_hardware():
    for key in ("dtype", "kv_cache_dtype"):
        with pytest.raises(LabsimError, match=f"{key} fp8 needs FP8 tensor cores.*A100"):
            labsim.run(experiment(duration=1, device="A100-SXM4-80GB", trt={key: "fp8"}))


def test_fp8_on_h100_halves_weights_and_doubles_kv():
    bf = section(labsim.run(experiment(duration=2)))
    f8 = section(labsim.run(experiment(duration=2, trt={"dtype": "fp8"})))
    assert f8["config"]["kv_cache_dtype"] == "fp8"
    assert f8["config"]["memory_plan"]["weight_bytes"] == pytest.approx(
        bf["config"]["memory_plan"]["weight_bytes"] / 2, rel=0.05)
    assert f8["kv_cache"]["capacity_blocks_per_replica"] > 2 * bf["kv_cache"]["capacity_blocks_per_replica"]
    assert f8["tpot_ms"]["mean"] < bf["tpot_ms"]["mean"]


def test_overlap_scheduler_runs_one_extra_step_per_request():
    base = experiment(rate=1, duration=3, prompt=200, output=20, seed=5)
    on = labsim.run(base)
    off = labsim.run(copy.deepcopy(base) | {"frameworks_to_test": [
        {"name": "t", "type": "trtllm", "config": {"model": "Llama-3.1-8B",
                                                   "disable_overlap_scheduler": True}}]})
    n = len(rows(on))
    steps_on, steps_off = section(on)["gpu"]["steps"], section(off)["gpu"]["steps"]
    # requests arrive 1/s and run alone: each takes one extra (discarded) decode step
    assert steps_on == steps_off + n
    assert section(on)["tpot_ms"]["mean"] < section(off)["tpot_ms"]["mean"]   # CPU hidden


def test_chunked_context_splits_long_prompts_in_block_multiples():
    cfg = experiment(rate=4, duration=2, prompt=6000, output=10,
                     trt={"enable_chunked_prefill": True, "max_num_tokens": 1000,
                          "enable_block_reuse": False})
    result = labsim.run(cfg)
    assert all(r["status"] == "finished" for r in rows(result))
    tokens = [s["batch_tokens"] - s["num_decodes"] for s in result.table("steps") if s["num_prefills"]]
    assert max(tokens) <= 1000 and any(t == 992 for t in tokens)     # 31 blocks of 32


def test_long_prompt_without_chunking_is_rejected():
    result = labsim.run(experiment(prompt=3000, trt={"max_num_tokens": 2048}))
    rejected = [r for r in rows(result) if r["status"] == "rejected"]
    assert rejected and all(r["reject_reason"] == "exceeds_max_num_tokens" for r in rejected)
    assert all(r["prompt_tokens"] <= 2048 for r in rows(result) if r["status"] == "finished")


def test_same_seed_same_summary():
    a = labsim.run(experiment(trt={**TIGHT, "capacity_scheduler_policy": "MAX_UTILIZATION"}, rate=30))
    b = labsim.run(experiment(trt={**TIGHT, "capacity_scheduler_policy": "MAX_UTILIZATION"}, rate=30))
    assert a.summary["frameworks"] == b.summary["frameworks"]
    assert rows(a) == rows(b)


def test_side_by_side_with_vllm_sees_identical_requests():
    both = [{"name": "vllm", "type": "vllm", "config": {"model": "Llama-3.1-8B"}},
            {"name": "trtllm", "type": "trtllm", "config": {"model": "Llama-3.1-8B"}}]
    result = labsim.run(experiment(rate=10, duration=4, frameworks=both))
    table = rows(result)
    by = {name: sorted((r["request_id"], r["arrival_s"], r["prompt_tokens"], r["output_tokens"])
                       for r in table if r["framework"] == name) for name in ("vllm", "trtllm")}
    assert by["vllm"] == by["trtllm"] and len(by["vllm"]) > 20
    comparison = result.summary["comparison"]
    assert comparison["baseline"] == "vllm"
    ratio = comparison["ratios"]["trtllm"]["ttft_ms.p50"]
    fw = result.summary["frameworks"]
    assert ratio == pytest.approx(fw["trtllm"]["ttft_ms"]["p50"] / fw["vllm"]["ttft_ms"]["p50"])


def test_tensor_parallel_70b_on_dgx():
    cfg = experiment(rate=4, duration=2, model="Llama-3.1-70B", trt={"tensor_parallel_size": 4})
    cfg["hardware_profile"] = {"device": "H100-SXM", "topology": "dgx-h100"}
    s = section(labsim.run(cfg))
    assert s["requests"]["finished"] > 0 and s["gpu"]["num_gpus"] == 4


def test_model_that_does_not_fit_names_the_field():
    with pytest.raises(LabsimError, match="tensor_parallel_size"):
        labsim.run(experiment(model="Llama-3.1-70B"))


def test_bad_option_is_a_config_error():
    with pytest.raises(ConfigError, match="capacity_scheduler_policy"):
        labsim.run(experiment(trt={"capacity_scheduler_policy": "EVICT_ALL"}))


def test_frontend_latency_adds_the_api_server_cost_to_ttft_only():
    from labsim_llm.engine.frontend import DEFAULT_FRONTEND

    on = rows(labsim.run(experiment(rate=2.0)))
    off = rows(labsim.run(experiment(rate=2.0, trt={"frontend_latency": False})))
    assert len(on) == len(off)
    for a, b in zip(on, off):
        extra = DEFAULT_FRONTEND.before_engine(a["prompt_tokens"]) + DEFAULT_FRONTEND.after_first_token()
        # at low load the engine sees each request at a slightly later time; the queue is empty
        assert a["ttft_ms"] == pytest.approx(b["ttft_ms"] + extra * 1e3, abs=0.6 * b["ttft_ms"])
        assert a["ttft_ms"] > b["ttft_ms"]


def test_a_follow_up_turn_reuses_the_previous_answer_blocks():
    """At release TensorRT-LLM stores the prompt *and* generated blocks (all but the last
    token): the next turn of a conversation reuses the previous prompt and answer, up to its
    own last prompt token (matching uses prompt − 1 tokens, whole 32-token blocks)."""
    conv = {"conversational_probability": 1.0, "max_turns": 2,
            "think_time_dist_config": {"type": "Constant", "value": 0.2}}
    pairs = consecutive_turns(rows(labsim.run(experiment(rate=2, duration=8, profile=conv))))
    assert len(pairs) > 5
    for first, second in pairs:
        stored = (first["prompt_tokens"] + first["output_tokens"] - 1) // 32
        matchable = (second["prompt_tokens"] - 1) // 32
        assert second["cached_prompt_tokens"] == min(stored, matchable) * 32


def test_taking_more_kv_blocks_than_are_free_names_the_scheduler_and_takes_none():
    """The executor's allocation past the free blocks (a capacity scheduler's bug) raises its own
    error, the pool untouched; within them it takes the blocks."""
    from types import SimpleNamespace

    import simpy
    from labsim_trtllm.executor import Replica

    owner = SimpleNamespace(context=SimpleNamespace(env=simpy.Environment(), config={}),
                            metrics=SimpleNamespace(warm_up=0.0),
                            frontend=SimpleNamespace(after_first_token_s=0.0))
    cfg = {"tokens_per_block": 32, "enable_block_reuse": True,
           "capacity_scheduler_policy": "GUARANTEED_NO_EVICT", "enable_chunked_prefill": False,
           "max_batch_size": 8, "max_num_tokens": 8192, "pipeline_parallel_size": 1,
           "disable_overlap_scheduler": False}
    replica = Replica(owner, 0, None, 4, cfg)
    with pytest.raises(RuntimeError, match="5 KV blocks needed, 4 free — the capacity scheduler"):
        replica._take(5)
    assert replica.pool.num_free == 4
    replica._take(3)
    assert (replica.pool.num_free, replica.pool.num_used) == (1, 3)


@pytest.mark.parametrize("trt", [
    {"kv_cache_max_tokens": 3000, "max_seq_len": 4096},
    {"kv_cache_max_tokens": 3000, "max_seq_len": 8192, "enable_chunked_prefill": False,
     "max_num_tokens": 2048},
    {"kv_cache_max_tokens": 100_000, "max_seq_len": 4000, "tokens_per_block": 64,
     "disable_overlap_scheduler": True},
])
def test_reject_reason_answers_every_request_as_its_three_checks(trt):
    """The reason a request is rejected is the one its three checks give: prompt + output over
    max_seq_len, an unchunked prompt over max_num_tokens, a reservation over the KV cache — at
    and around each limit; and every request within ``admit_limits`` (which the serving engine
    admits without asking ``reject_reason``) passes all three."""
    from labsim.orchestrator import Orchestrator, load_experiment
    from labsim_llm.request import Request

    fw = Orchestrator(load_experiment(experiment(trt=trt)))._build([])[3][0]
    cfg, replica, blocks = fw.cfg, fw.replicas[0], fw.plan.num_blocks

    def checks(r):
        if r.prompt_tokens + r.max_output_tokens > cfg["max_seq_len"]:
            return "exceeds_max_seq_len"
        if not cfg["enable_chunked_prefill"] and r.prompt_tokens > cfg["max_num_tokens"]:
            return "exceeds_max_num_tokens"
        if replica.need_total(r.prompt_tokens, r.max_output_tokens) > blocks:
            return "exceeds_kv_cache"
        return None

    edges = {cfg["max_seq_len"], cfg["max_num_tokens"], blocks * replica.tpb - replica.extra_token}
    totals = sorted({max(2, e + d) for e in edges for d in (-2, -1, 0, 1, 2)} | {10, 500})
    answers = set()
    most_total, most_prompt = fw.admit_limits()
    admitted_unasked = 0
    for i, total in enumerate(totals):
        for prompt in sorted({1, total // 2, total - 1, min(total - 1, cfg["max_num_tokens"] + 1)}):
            out = total - prompt
            r = Request(i, 0.0, prompt, out, out, ((i, prompt),))
            answers.add(fw.reject_reason(r))
            assert fw.reject_reason(r) == checks(r), (prompt, out)
            if total <= most_total and prompt <= most_prompt:
                admitted_unasked += 1
                assert checks(r) is None, (prompt, out)
    assert None in answers and len(answers) >= 2 and admitted_unasked

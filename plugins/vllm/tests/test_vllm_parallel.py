"""Tensor and pipeline parallelism: the collectives are priced and change the step time."""

from __future__ import annotations

import labsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def _offline(model, n, vllm):
    """*n* requests at once (512-token prompts, 128-token outputs): the engine saturated."""
    profile = {"profile_name": "p", "request_rate": 1e6,
               "prompt_tokens_dist_config": {"type": "Constant", "value": 512, "is_int": True},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 128, "is_int": True}}
    return {"simulation": {"random_seed": 3}, "hardware_profile": {"device": "H100-SXM"},
            "workload": {"num_requests": n, "client_profiles": [profile]},
            "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {"model": model, **vllm}}]}


@pytest.mark.parametrize("version", ["v1", "v0"])
def test_pipeline_keeps_one_batch_per_stage_in_flight(version):
    """At saturation each GPU of a PP=2 replica works about as hard as the single GPU of a PP=1
    one (one batch at a time would leave each idle half the time), and two batches overlap."""
    cfg = {"engine_version": version}
    one = labsim.run(_offline("Llama-3.1-8B", 400, cfg))
    two = labsim.run(_offline("Llama-3.1-8B", 400, {**cfg, "pipeline_parallel_size": 2}))
    s1, s2 = one.summary["frameworks"]["v"], two.summary["frameworks"]["v"]
    assert s2["requests"]["finished"] == 400
    assert s2["gpu"]["busy_fraction"] <= 1.0
    assert s2["gpu"]["mfu"] > 0.8 * s1["gpu"]["mfu"]
    assert s2["throughput"]["output_tokens_per_s"] > 1.6 * s1["throughput"]["output_tokens_per_s"]
    steps = sorted((r["start_s"], r["start_s"] + r["duration_s"]) for r in two.table("steps"))
    assert any(b[0] < a[1] for a, b in zip(steps, steps[1:]))       # batches in flight together


def test_a_lone_request_gains_nothing_from_the_pipeline():
    """With one request nothing overlaps: each batch starts as the previous one ends, and its
    token takes as long as at PP=1 (every stage in turn, plus the hand-offs)."""
    two = labsim.run(_offline("Llama-3.1-8B", 1, {"pipeline_parallel_size": 2}))
    steps = two.table("steps")
    for a, b in zip(steps, steps[1:]):
        assert b["start_s"] == pytest.approx(a["start_s"] + a["duration_s"], abs=1e-12)
    one = labsim.run(_offline("Llama-3.1-8B", 1, {}))
    tpot = [r.summary["frameworks"]["v"]["tpot_ms"]["p50"] for r in (one, two)]
    assert tpot[1] == pytest.approx(tpot[0], rel=0.1)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(5, 200), pp=st.sampled_from([2, 3, 4]), version=st.sampled_from(["v1", "v0"]),
       caching=st.booleans())
def test_pipeline_conservation_under_memory_pressure(rate, pp, version, caching):
    """Engines sharing one KV cache (v1) or splitting it (v0): every request finishes once,
    the blocks in use never exceed the capacity, busy time never exceeds the run."""
    profile = {"profile_name": "p", "request_rate": rate,
               "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 600, "sigma": 300,
                                             "is_int": True, "min": 4, "max": 2400},
               "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 100, "sigma": 50,
                                                 "is_int": True, "min": 2, "max": 400}}
    cfg = {"simulation": {"random_seed": 5}, "hardware_profile": {"device": "H100-SXM"},
           "workload": {"num_requests": 150, "client_profiles": [profile]},
           "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {
               "model": "Llama-3.1-8B", "engine_version": version, "pipeline_parallel_size": pp,
               "gpu_memory_utilization": 0.2, "max_model_len": 4096, "enable_prefix_caching": caching}}]}
    result = labsim.run(cfg)
    table = result.table("requests")
    assert len({r["request_id"] for r in table}) == len(table) == 150
    assert all(r["status"] == "finished" for r in table)
    s = result.summary["frameworks"]["v"]
    cap = s["kv_cache"]["capacity_blocks_per_replica"]
    assert max(r["kv_blocks_used"] for r in result.table("steps")) <= cap
    assert s["gpu"]["busy_fraction"] <= 1.0 + 1e-9


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(5, 200), pp=st.sampled_from([2, 3, 4]), version=st.sampled_from(["v1", "v0"]),
       caching=st.booleans(), seed=st.integers(0, 1000))
def test_pipeline_span_changes_no_output_under_memory_pressure(rate, pp, version, caching, seed):
    """The span that lands quiet decode-only batches without an event each
    (labsim_vllm.pipeline_span, on with fast_forward) gives, under KV pressure and
    preemption, the requests, steps and summary of one event per batch."""
    profile = {"profile_name": "p", "request_rate": rate,
               "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 600, "sigma": 300,
                                             "is_int": True, "min": 4, "max": 2400},
               "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 100, "sigma": 50,
                                                 "is_int": True, "min": 2, "max": 400}}
    outputs = []
    for fast_forward in (True, False):
        cfg = {"simulation": {"random_seed": seed}, "hardware_profile": {"device": "H100-SXM"},
               "workload": {"num_requests": 150, "client_profiles": [profile]},
               "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {
                   "model": "Llama-3.1-8B", "engine_version": version, "pipeline_parallel_size": pp,
                   "gpu_memory_utilization": 0.2, "max_model_len": 4096,
                   "enable_prefix_caching": caching, "fast_forward": fast_forward}}]}
        result = labsim.run(cfg)
        summary = result.summary["frameworks"]["v"]
        summary["config"].pop("fast_forward")
        outputs.append(repr((result.table("requests"), result.table("steps"), summary)))
    assert outputs[0] == outputs[1]


def test_stage_hand_offs_cross_the_network_when_stages_sit_on_different_nodes():
    """Stage s hands over from rank s·tp to (s + 1)·tp: NVLink for TP 4 × PP 2 in one DGX,
    the InfiniBand NIC for TP 8 × PP 2 over two."""
    model = _model("Llama-3.1-405B")
    dgx2 = labsim.topology("dgx-h100").customize({"nodes": 2})
    gpu = labsim.device("H100-SXM")
    calls = []

    def collective(kind, nbytes, ranks):
        calls.append((kind, ranks))
        return labsim.collective_time(kind, nbytes, ranks=ranks, topology=dgx2) if kind == "send_recv" else 0.0

    cost = {}
    for tp in (4, 8):
        pricer = StepPricer(model, gpu, dtype="bf16", kv_dtype="bf16", tp=tp, pp=2, collective=collective)
        cost[tp] = pricer.pp_time(512)
    assert ("send_recv", [0, 4]) in calls and ("send_recv", [0, 8]) in calls
    assert cost[8] > 2 * cost[4]


def test_a_replica_larger_than_the_topology_is_refused_with_the_fix():
    cfg = _on_dgx(experiment(rate=1, duration=1, vllm={"model": "Llama-3.1-405B", "tensor_parallel_size": 8,
                                                        "pipeline_parallel_size": 2}))
    with pytest.raises(labsim.errors.LabsimError, match=r"16 GPUs.*nodes: 2"):
        labsim.run(cfg)
    cfg["hardware_profile"]["topology"] = {"type": "dgx-h100", "nodes": 2}
    cfg["frameworks_to_test"][0]["config"]["max_model_len"] = 4096
    assert labsim.run(cfg).summary["frameworks"]["v"]["gpu"]["num_gpus"] == 16


def test_v0_pipeline_reports_the_kv_blocks_of_every_virtual_engine():
    """V0 splits the blocks among its virtual engines; the steps table and the KV figures count
    the whole replica, so a saturated run fills close to all of it."""
    result = labsim.run(_offline("Llama-3.1-8B", 400, {"engine_version": "v0", "pipeline_parallel_size": 2,
                                                        "gpu_memory_utilization": 0.3}))
    s = result.summary["frameworks"]["v"]
    cap = s["kv_cache"]["capacity_blocks_per_replica"]
    peak = max(r["kv_blocks_used"] for r in result.table("steps"))
    assert cap // 2 < peak <= cap
    assert s["kv_cache"]["peak_utilization"] > 0.5


def test_pipeline_steps_report_the_whole_replica():
    """Each step row counts the running and waiting requests of every engine of the replica."""
    result = labsim.run(_offline("Llama-3.1-8B", 300, {"pipeline_parallel_size": 2, "max_num_seqs": 64}))
    steps = result.table("steps")
    assert max(r["running"] for r in steps) == 64          # both engines' 32, not one engine's
    assert steps[0]["waiting"] + steps[0]["running"] >= 290


# -- what a vLLM TP step moves besides the layers' activations (labsim_vllm.tp_traffic) ------


def _pricer(model="Llama-3.1-70B", tp=4, **config):
    """The step pricer a vLLM engine with *config* builds, on a DGX H100 (its collectives
    priced as the engine's ``collective_time`` prices them)."""
    from labsim_llm.engine import capture_sizes
    from labsim_vllm.config import resolve
    from labsim_vllm.tp_traffic import traffic

    spec, gpu = _model(model), labsim.device("H100-SXM")
    cfg = resolve({"model": model, "tensor_parallel_size": tp, **config}, spec, gpu)

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return labsim.collective_time(kind, nbytes, ranks=ranks, topology="dgx-h100",
                                      algorithm=algorithm)

    return StepPricer(spec, gpu, tp=tp, collective=collective, traffic=traffic(cfg),
                      graph_sizes=capture_sizes(cfg["max_num_seqs"], cfg["max_num_batched_tokens"]))


def _tp4_pricer(**config):
    return _pricer(**config)


def test_vllm_tp_all_reduces_use_its_custom_all_reduce_unless_disabled():
    """vLLM's own one-/two-shot kernels below 8 MiB: a TP4 decode step is faster than with NCCL
    (--disable-custom-all-reduce); a large prefill's all-reduces (> 8 MiB) are NCCL's either way."""
    for version in ("v1", "v0"):
        own = _tp4_pricer(engine_version=version, max_model_len=4096)
        nccl = _tp4_pricer(engine_version=version, max_model_len=4096, disable_custom_all_reduce=True)
        assert own.traffic.all_reduce == "vllm_custom_ar" and nccl.traffic.all_reduce == "auto"
        small = 16 * own.hidden * 2                       # 256 KiB: vLLM runs one-shot
        assert own.comm_time(small) < 0.7 * nccl.comm_time(small)
        # 1 MiB: vLLM runs two-shot, about NCCL's cost on an H100 (18 vs 19 µs measured in
        # CUDA graphs, vLLM PR #24111)
        mid = 64 * own.hidden * 2
        assert own.comm_time(mid) <= nccl.comm_time(mid)
        big = 2048 * own.hidden * 2                       # 32 MiB
        assert own.comm_time(big) == nccl.comm_time(big)
        assert own.step_time((), 64, 64 * 500) < nccl.step_time((), 64, 64 * 500)


def test_v0_gathers_logits_and_broadcasts_inputs_v1_all_gathers_only():
    """V0: logits gathered onto rank 0 and the driver's input tensors broadcast every step;
    V1: logits all-gathered, no input broadcast on the GPUs."""
    v0 = _tp4_pricer(engine_version="v0", max_model_len=4096, num_scheduler_steps=10)
    v1 = _tp4_pricer(engine_version="v1", max_model_len=4096)
    assert v0.traffic.logits == "gather" and v1.traffic.logits == "all_gather"
    assert v1.broadcast_time(64, 64, True) == 0.0
    # decodes: 9 tensors plus the multi-step round's last sampled tokens, one NCCL call each
    sizes = v0.traffic.broadcast(64, 64, True)
    assert len(sizes) == 10
    one = labsim.collective_time("broadcast", 64 * 8, ranks=4, topology="dgx-h100")
    assert v0.broadcast_time(64, 64, True) > 9 * one
    # a prompt step sends no block tables (empty without prefix caching) and no sampled tokens
    assert len(v0.traffic.broadcast(700, 3, False)) == 8
    # the logits of 64 rows (64 × 128256 bf16, 16 MiB) cost something on either path
    free = _tp4_pricer(engine_version="v0", max_model_len=4096)
    assert v0.head_time(64) > v0.head_time(1) and v1.head_time(64) > v1.head_time(1)
    assert free.broadcast_time(64, 64, True) > 0.0


def test_tp1_has_no_tp_traffic():
    pricer = _pricer("Llama-3.1-8B", tp=1, engine_version="v0")
    assert pricer.broadcast_time(64, 64, True) == 0.0
    assert pricer.head_time(64) == _pricer("Llama-3.1-8B", tp=1).head_time(64)


def test_disable_custom_all_reduce_reaches_the_engine_from_the_experiment_file():
    cfg = {"model": "Llama-3.1-70B", "tensor_parallel_size": 4}
    own = labsim.run(_on_dgx(experiment(rate=1, duration=3, vllm=cfg)))
    nccl = labsim.run(_on_dgx(experiment(rate=1, duration=3,
                                         vllm={**cfg, "disable_custom_all_reduce": True})))
    a, b = own.summary["frameworks"]["v"], nccl.summary["frameworks"]["v"]
    assert b["config"]["disable_custom_all_reduce"] is True
    assert a["config"]["disable_custom_all_reduce"] is False
    assert a["tpot_ms"]["p50"] < b["tpot_ms"]["p50"]

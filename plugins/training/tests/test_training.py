"""labsim-training: memory formulas, the pipeline schedule, layout refusals, OOM, end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.cli import cli
from labsim.errors import UsageError
from labsim_training import estimate
from labsim_training.engine import peak_in_flight, pipeline_order
from labsim_training.memory import activation_bytes_per_layer

GPT2 = {"id": "gpt-1.3b", "num_layers": 24, "hidden_size": 2048, "num_attention_heads": 16,
        "intermediate_size": 8192, "vocab_size": 51200, "max_position_embeddings": 2048,
        "mlp": "standard", "norm": "layernorm", "position": "learned"}


# -- Korthikanti et al. (2022), §4: activations per layer -----------------------------------------

@pytest.mark.parametrize("t", [1, 2, 8])
def test_activation_memory_matches_korthikanti(t):
    s, b, h, a = 2048, 4, 12288, 96
    sbh = s * b * h
    f = activation_bytes_per_layer
    assert f(s, b, h, a, 1) == pytest.approx(sbh * (34 + 5 * a * s / h))
    assert f(s, b, h, a, t) == pytest.approx(sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    sp = sbh / t * (34 + 5 * a * s / h) if t > 1 else sbh * (34 + 5 * a * s / h)
    assert f(s, b, h, a, t, sp=True) == pytest.approx(sp)
    assert f(s, b, h, a, t, sp=True, recompute="selective") == pytest.approx(34 * sbh / t)
    assert f(s, b, h, a, t, recompute="selective") == pytest.approx(sbh * (10 + 24 / t))
    assert f(s, b, h, a, t, recompute="full") == pytest.approx(2 * sbh)


def test_first_stage_holds_korthikanti_interleaved_in_flight():
    # 1F1B: stage 0 holds p micro-batches; interleaved: L(1 + (p-1)/(p·v)) layers' worth
    p, m = 8, 32
    assert peak_in_flight(0, p, m) == p
    assert peak_in_flight(p - 1, p, m) == 1
    v = 3
    chunks = peak_in_flight(0, p, m, v)
    assert chunks / v == pytest.approx(p * (1 + (p - 1) / (p * v)))


def test_pipeline_order_runs_every_forward_and_backward_once():
    for v in (1, 2):
        for stage in range(4):
            ops = pipeline_order(stage, 4, 8, v)
            assert sorted(ops) == sorted({(k, mb, c) for k in "FB" for mb in range(8) for c in range(v)})


# -- the pipeline bubble ----------------------------------------------------------------------------

def _run(config, *, gbs=64, seq=1024, model=None, topology=None, device="A100-SXM4-80GB", **kw):
    return estimate(model or GPT2, framework=kw.pop("framework", "megatron"), config=config,
                    device=device, topology=topology or {"type": "dgx-a100", "nodes": 1},
                    seq_len=seq, global_batch_size=gbs, **kw)


BALANCED = {**GPT2, "vocab_size": 256}  # a negligible LM head: stages of equal work


def test_bubble_is_p_minus_one_over_m_of_the_ideal():
    p, gbs = 4, 16
    r = _run({"pipeline_parallel": p, "data_parallel": 1, "host_overhead_per_kernel_us": 0}, gbs=gbs, gpus=4,
             model=BALANCED)
    bd = r["time_breakdown_s"]
    m = r["layout"]["micro_batches_per_replica"]
    ideal = bd["compute"] + bd["exposed_communication"]["tp"]
    assert bd["pipeline_bubble"] / ideal == pytest.approx((p - 1) / m, rel=0.15)


def test_interleaving_shrinks_the_bubble():
    plain = _run({"pipeline_parallel": 4, "data_parallel": 1}, gbs=16, gpus=4, model=BALANCED)
    inter = _run({"pipeline_parallel": 4, "data_parallel": 1, "virtual_pipeline_stages": 2}, gbs=16, gpus=4,
                 model=BALANCED)
    ratio = inter["time_breakdown_s"]["pipeline_bubble"] / plain["time_breakdown_s"]["pipeline_bubble"]
    assert 0.35 < ratio < 0.7
    assert inter["iteration_time_s"] < plain["iteration_time_s"]


# -- layout refusals and OOM ------------------------------------------------------------------------

@pytest.mark.parametrize("config, field, allowed", [
    ({"tensor_parallel": 3}, "tensor_parallel", "allowed: 1, 2, 4, 8, 16"),
    ({"pipeline_parallel": 5}, "pipeline_parallel", "allowed: 1, 2, 3, 4, 6, 8, 12, 24"),
    ({"tensor_parallel": 2, "pipeline_parallel": 3}, "data_parallel", "not a multiple"),
    ({"micro_batch_size": 3}, "micro_batch_size", "allowed micro_batch_size: 1, 2, 4, 8"),
    ({"pipeline_parallel": 2, "data_parallel": 1, "virtual_pipeline_stages": 5},
     "virtual_pipeline_stages", "allowed: 1, 2, 3, 4, 6, 12"),
])
def test_impossible_layouts_name_the_field_and_allowed_values(config, field, allowed):
    with pytest.raises(UsageError) as err:
        _run(config, gbs=64)
    assert str(err.value).startswith(field), err.value
    assert allowed in str(err.value)


def test_oom_names_the_breakdown_and_what_to_try():
    with pytest.raises(UsageError) as err:
        estimate("GPT-3-175B", framework="megatron", config={"tensor_parallel": 8}, device="A100-SXM4-80GB",
                 topology={"type": "dgx-a100", "nodes": 1}, seq_len=2048, global_batch_size=8)
    msg = str(err.value)
    assert msg.startswith("out of memory: needs ") and "GiB per GPU of 79" in msg
    assert "optimizer" in msg and "weights" in msg and "activations" in msg
    assert "try pipeline_parallel: 12" in msg  # model states shrink as 1/PP; 12 divides 96 layers


def test_fp8_refused_on_a100():
    with pytest.raises(UsageError, match="precision: fp8 is not supported on A100"):
        _run({"precision": "fp8"})


def test_uneven_first_and_last_stages():
    r = estimate("Llama-3.1-405B", framework="megatron", device="H100-SXM",
                 config={"tensor_parallel": 8, "pipeline_parallel": 16, "decoder_first_pipeline_num_layers": 7,
                         "decoder_last_pipeline_num_layers": 7, "recompute": "full",
                         "sequence_parallel": True, "distributed_optimizer": True, "data_parallel": 4},
                 topology={"type": "dgx-h100", "nodes": 64}, seq_len=8192, global_batch_size=64)
    assert r["layout"]["gpus"] == 512 and r["iteration_time_s"] > 0


def test_interleaved_stages_with_embedding_and_head_alone():
    from labsim_training.job import TrainingJob, resolve_model
    from labsim_training.layout import make_layout

    model = resolve_model(None, "Llama-3.1-405B")
    job = TrainingJob(model, 8192, 2048)
    lay = make_layout(model, job, tp=8, pp=16, dp=128, vpp=8, first_stage_layers=0, last_stage_layers=0)
    assert lay.chunk_layers[0] == 0 and lay.chunk_layers[-1] == 0 and set(lay.chunk_layers[1:-1]) == {1}
    assert lay.stage_layers(0) == 7 and lay.stage_layers(15) == 7 and lay.stage_layers(5) == 8
    with pytest.raises(UsageError, match="do not split evenly"):
        make_layout(model, job, tp=8, pp=16, dp=128, vpp=8, first_stage_layers=1, last_stage_layers=0)


# -- invariants -------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2, 4]), mb=st.sampled_from([1, 2]),
       recompute=st.sampled_from(["none", "selective", "full"]), sp=st.booleans(),
       framework=st.sampled_from(["megatron", "deepspeed", "fsdp", "ddp"]), overlap=st.booleans())
def test_breakdown_sums_to_iteration_time(tp, pp, mb, recompute, sp, framework, overlap):
    config = {"micro_batch_size": mb, "recompute": recompute}
    if framework == "megatron":
        config.update(tensor_parallel=tp, pipeline_parallel=pp, sequence_parallel=sp,
                      overlap_grad_reduce=overlap)
    elif framework == "deepspeed":
        config.update(zero_stage=tp - 1 if tp < 4 else 3)
    r = _run(config, gbs=32, topology={"type": "dgx-a100", "nodes": 2}, framework=framework)
    bd = r["time_breakdown_s"]
    total = bd["compute"] + sum(bd["exposed_communication"].values()) + bd["pipeline_bubble"] + bd["optimizer"]
    assert total == pytest.approx(r["iteration_time_s"], rel=1e-9)
    assert all(v >= -1e-12 for v in [bd["compute"], bd["pipeline_bubble"], *bd["exposed_communication"].values()])


@settings(max_examples=8, deadline=None)
@given(nodes=st.sampled_from([1, 2, 4, 8]))
def test_more_data_parallel_never_raises_zero3_memory(nodes):
    def mem(n):
        return _run({"zero_stage": 3}, gbs=256, framework="deepspeed",
                    topology={"type": "dgx-a100", "nodes": n})["memory_per_gpu_gib"]["total"]
    assert mem(nodes * 2) <= mem(nodes)


# -- end to end -------------------------------------------------------------------------------------

EXPERIMENT = """
name: small-training
hardware_profile: {device: A100-SXM4-80GB, topology: {type: dgx-a100, nodes: 2}}
workload: {type: training, model: GPT-2-Large, seq_len: 1024, global_batch_size: 64, iterations: 2}
frameworks_to_test:
  - {name: mega, type: megatron, config: {tensor_parallel: 2, pipeline_parallel: 2, micro_batch_size: 2,
                                          record_timeline: true}}
  - {name: zero, type: deepspeed, config: {zero_stage: 2, micro_batch_size: 4}}
  - {name: fsdp, type: fsdp, config: {sharding: full_shard, micro_batch_size: 4}}
  - {name: ddp, type: ddp, config: {micro_batch_size: 4}}
"""


def _labsim_run(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out)])
    return result, out


def test_labsim_run_side_by_side(tmp_path):
    result, out = _labsim_run(tmp_path, EXPERIMENT)
    assert result.exit_code == 0, result.output
    assert "iteration time (s)" in result.output and "MFU" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workload"]["model"] == "GPT-2-Large"
    for name in ("mega", "zero", "fsdp", "ddp"):
        fw = summary["frameworks"][name]
        assert fw["iterations"] == 2 and len(fw["iteration_times_s"]) == 2
        assert fw["layout"]["gpus"] == 16
        assert 0 < fw["mfu"] < 1
        assert fw["cost"]["usd_per_billion_tokens"] > 0
        assert fw["tokens_per_s"] == pytest.approx(64 * 1024 / fw["iteration_time_s"])
    # what is sharded shows in memory: FSDP full_shard < ZeRO-2 < DDP in model states
    mem = {n: summary["frameworks"][n]["memory_per_gpu_gib"] for n in ("zero", "fsdp", "ddp")}
    assert mem["fsdp"]["weights"] < mem["zero"]["weights"] == pytest.approx(mem["ddp"]["weights"])
    assert mem["zero"]["optimizer"] < mem["ddp"]["optimizer"]
    # later iterations repeat the first without stepping it again: identical to stepping it
    mega = summary["frameworks"]["mega"]
    assert mega["iteration_times_s"][0] == mega["iteration_times_s"][1]
    stepped = estimate("GPT-2-Large", framework="megatron", device="A100-SXM4-80GB",
                       topology={"type": "dgx-a100", "nodes": 2}, seq_len=1024, global_batch_size=64,
                       config={"tensor_parallel": 2, "pipeline_parallel": 2, "micro_batch_size": 2})
    assert stepped["iteration_time_s"] == pytest.approx(mega["iteration_times_s"][1], rel=1e-12)
    # the opt-in timeline: the first iteration of each stage's first rank, stream by stream
    import csv
    with open(out / "timeline.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["framework", "iteration", "rank", "stage", "stream", "kind", "micro_batch",
                             "start_s", "end_s"]
    m = summary["frameworks"]["mega"]["layout"]["micro_batches_per_replica"]
    assert {r["framework"] for r in rows} == {"mega"} and {r["iteration"] for r in rows} == {"0"}
    assert {(r["stage"], r["rank"]) for r in rows} == {("0", "0"), ("1", "8")}  # after TP 2 × DP 4 ranks
    ops = [r for r in rows if r["kind"] in ("forward", "backward")]
    assert len(ops) == 2 * 2 * m and {r["stream"] for r in ops} == {"compute"}
    kinds = {(r["stream"], r["kind"]) for r in rows}
    assert {("comm", "tp"), ("comm", "pp"), ("comm", "dp"), ("compute", "bubble"),
            ("compute", "optimizer")} <= kinds
    iteration = mega["iteration_times_s"][0]
    for stage in ("0", "1"):  # one stream's rows never overlap and all lie inside the iteration
        busy = sorted((float(r["start_s"]), float(r["end_s"])) for r in rows
                      if r["stage"] == stage and r["stream"] == "compute")
        assert all(a[1] <= b[0] + 1e-12 for a, b in zip(busy, busy[1:]))
        assert busy[0][0] >= 0 and busy[-1][1] <= iteration + 1e-12
    # same file, same outputs
    again, out2 = _labsim_run(tmp_path / "..", EXPERIMENT, name="exp2.yaml")
    assert (out2 / "summary.json").read_text().replace("exp2", "exp") == \
        (out / "summary.json").read_text()


def test_labsim_run_refuses_bad_layout_with_exit_2(tmp_path):
    text = EXPERIMENT.replace("tensor_parallel: 2", "tensor_parallel: 3")
    result, _ = _labsim_run(tmp_path, text)
    assert result.exit_code == 2
    assert "tensor_parallel: 3 does not split the 20 attention heads" in result.output
    assert "Traceback" not in result.output


def test_gradient_reduction_and_handoffs_share_the_nic():
    # overlapped DP all-reduce of the last backward and the backward hand-offs leave the node
    # through the same NIC: sharing it can only slow the iteration down
    def run(contention):
        return estimate("GPT-3-175B", framework="megatron", device="A100-SXM4-80GB",
                        topology={"type": "dgx-a100", "nodes": 32}, seq_len=2048, global_batch_size=64,
                        contention=contention,
                        config={"tensor_parallel": 8, "pipeline_parallel": 8, "recompute": "full",
                                "overlap_grad_reduce": True, "precision": "fp16"})["iteration_time_s"]
    assert run(True) > run(False)


def test_gpipe_has_the_1f1b_bubble_but_holds_every_micro_batch():
    one = _run({"pipeline_parallel": 4, "data_parallel": 1}, gbs=16, gpus=4, model=BALANCED)
    gpipe = _run({"pipeline_parallel": 4, "data_parallel": 1, "pipeline_schedule": "gpipe"}, gbs=16, gpus=4,
                 model=BALANCED)
    assert gpipe["iteration_time_s"] == pytest.approx(one["iteration_time_s"], rel=0.02)
    assert gpipe["memory_per_gpu_gib"]["activations"] > 3 * one["memory_per_gpu_gib"]["activations"]
    assert peak_in_flight(0, 4, 16, 1, "gpipe") == 16


def test_hybrid_shard_shards_within_a_node():
    def mem(mode):
        return _run({"sharding": mode}, gbs=64, framework="fsdp", topology={"type": "dgx-a100", "nodes": 4},
                    check_memory=False)["memory_per_gpu_gib"]
    full, hybrid, none = mem("full_shard"), mem("hybrid_shard"), mem("no_shard")
    # model states split 32 ways, 8 ways (a node), not at all
    assert hybrid["optimizer"] == pytest.approx(4 * full["optimizer"], rel=1e-6)
    assert none["optimizer"] == pytest.approx(8 * hybrid["optimizer"], rel=1e-6)


def test_fp8_on_h100_is_faster_but_not_twice():
    def run(precision):
        return estimate("Llama-3-8B", framework="megatron", device="H100-SXM",
                        topology={"type": "dgx-h100", "nodes": 1},
                        seq_len=4096, global_batch_size=32,
                        config={"tensor_parallel": 2, "sequence_parallel": True, "recompute": "selective",
                                "distributed_optimizer": True, "precision": precision})["iteration_time_s"]
    bf16, fp8 = run("bf16"), run("fp8")
    assert 1.1 < bf16 / fp8 < 1.9  # attention, element-wise work and the casts stay 16-bit


@pytest.mark.parametrize("precision, plain, dist", [("fp16", 20, (4, 16)), ("bf16", 18, (6, 12))])
def test_megatron_bytes_per_parameter_match_its_documentation(precision, plain, dist):
    # Megatron-LM's distributed optimizer docs: fp16 20 B/param (4 + 16/d), bf16 18 (6 + 12/d)
    from labsim_training.frameworks import Megatron
    from labsim_training.memory import model_state_bytes

    policy = Megatron.__new__(Megatron)
    d = 8
    for distributed, expected in ((False, plain), (True, dist[0] + dist[1] / d)):
        sharding = policy.sharding({"distributed_optimizer": distributed}, precision)
        assert sum(model_state_bytes(1.0, d, sharding, precision)) == pytest.approx(expected)


def test_zero_offload_moves_the_optimizer_to_the_host():
    def run(offload):
        return _run({"zero_stage": 2, "offload_optimizer": offload}, gbs=64, framework="deepspeed")
    on_gpu, offloaded = run(False), run(True)
    assert offloaded["memory_per_gpu_gib"]["optimizer"] == 0 < on_gpu["memory_per_gpu_gib"]["optimizer"]
    # CPU Adam at host-memory speed is slower than the GPU's
    assert offloaded["time_breakdown_s"]["optimizer"] > on_gpu["time_breakdown_s"]["optimizer"]


def test_resnet50_layer_table_matches_the_model_database():
    from labsim_training.cnn import parameters, resnet50
    from labsim_training.job import resolve_model

    model = resolve_model(None, "ResNet-50")
    convs, head = resnet50()
    assert len(convs) == 53
    assert parameters(model) == model.num_parameters
    assert sum(c.flops() for c in convs) + 2 * head - 2 * 1000 == pytest.approx(model.flops_per_sample_forward)


def test_resnet50_trains_data_parallel_and_refuses_tensor_parallel(tmp_path):
    text = """
name: resnet
hardware_profile: {device: A100-SXM4-80GB, topology: {type: dgx-a100, nodes: 1}}
workload: {type: training, model: ResNet-50, global_batch_size: 2048, iterations: 2}
frameworks_to_test:
  - {name: ddp, type: ddp, config: {micro_batch_size: 256, precision: fp16}}
"""
    result, out = _labsim_run(tmp_path, text)
    assert result.exit_code == 0, result.output
    ddp = json.loads((out / "summary.json").read_text())["frameworks"]["ddp"]
    assert 1000 < ddp["samples_per_s"] / 8 < 5000  # images/s per A100 with mixed precision
    megatron = text.replace("type: ddp, config: {", "type: megatron, config: {tensor_parallel: 2, ")
    bad, _ = _labsim_run(tmp_path, megatron, name="bad.yaml")
    assert bad.exit_code == 2 and "tensor_parallel: 2; ResNet-50 is a CNN" in bad.output


def test_fp32_training_runs_on_a_gpu_without_tf32_and_a_cnn_that_does_not_fit_is_refused():
    # Volta has no TF32: fp32 matrix work runs on its FP32 units (15.7 TFLOP/s on a V100)
    ok = estimate("ResNet-50", framework="ddp", device="V100-SXM2-32GB", global_batch_size=64, seq_len=1,
                  config={"micro_batch_size": 64, "precision": "fp32"})
    assert ok["iteration_time_s"] > 0
    tf32 = estimate("ResNet-50", framework="ddp", device="A100-SXM4-80GB", global_batch_size=64, seq_len=1,
                    config={"micro_batch_size": 64, "precision": "fp32"})
    assert tf32["iteration_time_s"] < ok["iteration_time_s"]
    with pytest.raises(UsageError, match="out of memory: needs .* try .*micro_batch_size"):
        estimate("ResNet-50", framework="ddp", device="V100-SXM2-32GB", global_batch_size=512, seq_len=1,
                 config={"micro_batch_size": 512, "precision": "fp32"})


ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def test_labsim_scale_strong_and_weak():
    root = ROOT
    path = str(root / "examples" / "training_medium_32gpu.yaml")
    result = CliRunner().invoke(cli, ["scale", path, "--gpus", "8", "16", "128"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "strong scaling" in lines[0]
    first = [line for line in lines if line.split()[:1] == ["8"]]
    assert len(first) == 3 and all(line.endswith("100.0%") for line in first)
    # at 128 GPUs ZeRO-2's micro-batch of 8 no longer divides the batch: its own reason, the rest run
    big = {line.split()[1]: line for line in lines if line.split()[:1] == ["128"]}
    assert "micro_batch_size" in big["zero2"] and "%" in big["megatron"]
    weak = CliRunner().invoke(cli, ["scale", path, "--gpus", "8", "64", "--mode", "weak"])
    assert weak.exit_code == 0 and "weak scaling" in weak.output
    bad = CliRunner().invoke(cli, ["scale", str(root / "examples" / "quickstart.yaml"), "--gpus", "8"])
    assert bad.exit_code == 2 and "training experiment" in bad.output


def test_a_straggler_slows_every_replica():
    base = {"pipeline_parallel": 2, "data_parallel": 2}
    fast = _run(base, gbs=32, gpus=4)["iteration_time_s"]
    slow = _run({**base, "straggler": {"stage": 1, "slowdown": 1.5}}, gbs=32, gpus=4)["iteration_time_s"]
    assert 1.2 * fast < slow < 1.5 * fast
    with pytest.raises(UsageError, match="straggler.stage: 2; allowed: 0 … 1"):
        _run({**base, "straggler": {"stage": 2, "slowdown": 1.5}}, gbs=32, gpus=4)


def test_context_parallel_splits_long_sequences():
    def run(cp, **extra):
        return estimate("Llama-3-8B", framework="megatron", device="H100-SXM",
                        topology={"type": "dgx-h100", "nodes": 4}, seq_len=65536, global_batch_size=8,
                        config={"tensor_parallel": 4, "context_parallel": cp, "sequence_parallel": True,
                                "recompute": "selective", "distributed_optimizer": True, **extra},
                        check_memory=False)
    one, two = run(1), run(2)
    assert two["layout"]["data_parallel"] == one["layout"]["data_parallel"] // 2
    assert two["memory_per_gpu_gib"]["activations"] < 0.6 * one["memory_per_gpu_gib"]["activations"]
    assert "cp" in two["time_breakdown_s"]["exposed_communication"]
    assert two["iteration_time_s"] == pytest.approx(one["iteration_time_s"], rel=0.1)  # same work, same GPUs
    with pytest.raises(UsageError, match="context_parallel: 3 cannot split sequences of 65536"):
        run(3)
    with pytest.raises(UsageError, match="context_parallel: ring attention runs on flash"):
        run(2, attention="unfused")


# -- expert parallelism (MoE) -----------------------------------------------------------------------

def _mixtral(ep, tp=1, nodes=4, check_memory=True, **extra):
    config = {"tensor_parallel": tp, "sequence_parallel": tp > 1, "pipeline_parallel": 4,
              "expert_parallel": ep, "recompute": "full", "distributed_optimizer": True, **extra}
    return estimate("Mixtral-8x7B", framework="megatron", device="H100-SXM", config=config,
                    topology={"type": "dgx-h100", "nodes": nodes}, seq_len=4096, global_batch_size=64,
                    check_memory=check_memory)


def test_expert_parallel_shards_the_experts_and_exchanges_tokens_by_all_to_all():
    one, eight = _mixtral(1, check_memory=False), _mixtral(8)
    m1, m8 = one["memory_per_gpu_gib"], eight["memory_per_gpu_gib"]
    # Mixtral-8x7B: 45.1 B of its 46.7 B parameters are experts; on 4 stages a GPU of EP 8 holds one
    # expert per layer instead of eight
    assert m8["weights"] < m1["weights"] / 4
    assert m8["optimizer"] == pytest.approx(m1["optimizer"], rel=1e-9)  # sharded over DP either way
    comm1, comm8 = one["time_breakdown_s"]["exposed_communication"], eight["time_breakdown_s"]["exposed_communication"]
    assert "ep" not in comm1 and comm8["ep"] > 0
    # expert gradients are reduced over DP / EP ranks only
    assert comm8["dp"] < comm1["dp"]
    assert eight["layout"]["expert_parallel"] == 8
    bd = eight["time_breakdown_s"]
    total = bd["compute"] + sum(bd["exposed_communication"].values()) + bd["pipeline_bubble"] + bd["optimizer"]
    assert total == pytest.approx(eight["iteration_time_s"], rel=1e-9)


def test_expert_all_to_all_across_nodes_costs_more_than_inside_one():
    # TP 1: the EP group of 8 is one node's GPUs; TP 2: every other rank, over two nodes
    inside = _mixtral(8, tp=1)["time_breakdown_s"]["exposed_communication"]["ep"]
    across = _mixtral(8, tp=2, nodes=8)["time_breakdown_s"]["exposed_communication"]["ep"]
    assert across > 1.5 * inside


@pytest.mark.parametrize("model, config, message", [
    ("Llama-3-8B", {"expert_parallel": 2}, "expert_parallel: 2; Llama-3-8B has no experts"),
    ("Mixtral-8x7B", {"expert_parallel": 3}, "allowed: 1, 2, 4, 8"),
    ("Mixtral-8x7B", {"expert_parallel": 8, "data_parallel": 4}, "must divide data_parallel 4"),
    ("Mixtral-8x7B", {"expert_parallel": 2, "tensor_parallel": 2}, "sequence_parallel: false"),
])
def test_impossible_expert_layouts_are_refused(model, config, message):
    with pytest.raises(UsageError, match=message):
        estimate(model, framework="megatron", device="H100-SXM", config={"recompute": "full", **config},
                 topology={"type": "dgx-h100", "nodes": 4}, seq_len=1024, global_batch_size=32,
                 check_memory=False)


def test_moe_oom_suggests_expert_parallel():
    with pytest.raises(UsageError, match="try expert_parallel: 8"):
        _mixtral(1)


def test_timeline_shows_recompute_and_parameter_gathers():
    def kinds(framework, config):
        r = estimate(GPT2, framework=framework, device="A100-SXM4-80GB", config=config, record=True,
                     topology={"type": "dgx-a100", "nodes": 2}, seq_len=1024, global_batch_size=32)
        return [row[2] for row in r["timeline"]]

    mega = kinds("megatron", {"tensor_parallel": 2, "pipeline_parallel": 2, "recompute": "full"})
    assert mega.count("recompute") == mega.count("backward") == mega.count("forward")
    zero3 = kinds("deepspeed", {"zero_stage": 3, "micro_batch_size": 2})
    assert "param_gather" in zero3 and "dp" in zero3 and "tp" not in zero3


def test_a_slow_nic_slows_the_gradient_reduction_of_every_replica():
    def run(links):
        return estimate("GPT-2-Large", framework="ddp", device="A100-SXM4-80GB", config={"micro_batch_size": 4},
                        topology={"type": "dgx-a100", "nodes": 2, "degraded_links": links},
                        seq_len=1024, global_batch_size=64)["time_breakdown_s"]["exposed_communication"]["dp"]

    healthy, one_slow_nic = run({}), run({"n1.nic5": 0.25})
    assert one_slow_nic > 2 * healthy  # every ring crosses it: the slowest link sets the pace


def test_fp8_keeps_cast_and_transposed_weights_and_amax_histories():
    def memory(precision, framework="megatron", config=None):
        return estimate("Llama-3-8B", framework=framework, device="H100-SXM", config={
            "precision": precision, "recompute": "full", **(config or {"tensor_parallel": 2})},
            topology={"type": "dgx-h100", "nodes": 1}, seq_len=4096, global_batch_size=16,
            check_memory=False)["memory_per_gpu_gib"]

    bf16, fp8 = memory("bf16"), memory("fp8")
    # Llama-3-8B: 32 layers of 218 M GEMM weights (6.98 B), split over TP 2; 2 B each for the FP8
    # copy and its transpose, plus 32 × 4 GEMMs × 3 tensors × 1,026 fp32 amax/scale entries
    expected = (2 * 6_979_321_856 / 2 + 32 * 4 * 3 * 1026 * 4) / 2**30
    assert fp8["buffers"] - bf16["buffers"] == pytest.approx(expected, rel=1e-6)
    assert fp8["weights"] == bf16["weights"]  # 16-bit weights stay (the optimizer updates them)
    # sharded weights are gathered (and cast) layer by layer: two layers live at a time
    zero3 = memory("fp8", "deepspeed", {"zero_stage": 3})["buffers"] - memory("bf16", "deepspeed",
                                                                               {"zero_stage": 3})["buffers"]
    assert zero3 == pytest.approx((2 * 2 * 218_103_808 + 32 * 4 * 3 * 1026 * 4) / 2**30)  # 2 whole layers


def test_zero_infinity_keeps_the_weight_shards_in_host_memory():
    def run(config):
        return estimate("Llama-2-13B", framework="deepspeed", device="A100-SXM4-80GB",
                        config={"zero_stage": 3, "recompute": "full", **config},
                        topology={"type": "dgx-a100", "nodes": 1}, seq_len=2048, global_batch_size=16,
                        record=True)

    plain, offload = run({}), run({"offload_param": True, "offload_optimizer": True})
    assert plain["memory_per_gpu_gib"]["weights"] > 3 and offload["memory_per_gpu_gib"]["weights"] == 0
    assert offload["memory_per_gpu_gib"]["optimizer"] == 0
    assert offload["iteration_time_s"] > plain["iteration_time_s"]  # PCIe copies and CPU Adam
    assert sum(1 for row in offload["timeline"] if row[2] == "param_gather") > \
        sum(1 for row in plain["timeline"] if row[2] == "param_gather")
    with pytest.raises(UsageError, match="offload_param: true needs zero_stage: 3"):
        run({"zero_stage": 2, "offload_param": True})

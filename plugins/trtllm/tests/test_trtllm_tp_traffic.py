"""What a TensorRT-LLM TP step moves besides the layers' activations (labsim_trtllm.tp_traffic):
AUTO all-reduces take the faster of its own kernels and NCCL on Hopper/Blackwell, NCCL elsewhere;
the logits are all-gathered."""

from __future__ import annotations

import labsim
import pytest
from labsim_llm.models import builtin_models
from labsim_trtllm.config import graph_sizes, resolve
from labsim_trtllm.pricing import TrtStepPricer


def _pricer(device="H100-SXM", topology="dgx-h100", tp=4, **config):
    """The iteration pricer a TensorRT-LLM engine with *config* builds (collectives priced as
    the engine's ``collective_time`` prices them)."""
    spec, gpu = builtin_models()["Llama-3.1-70B"], labsim.device(device)
    cfg = resolve({"model": "Llama-3.1-70B", "tensor_parallel_size": tp, **config}, spec, gpu)

    def collective(kind, nbytes, ranks, algorithm="auto"):
        return labsim.collective_time(kind, nbytes, ranks=ranks, topology=topology, algorithm=algorithm)

    def cost(kind, nbytes, ranks, algorithm="auto"):
        op = labsim.get_registry().get("collectives", kind)
        name, priced = op.cost(nbytes, ranks=ranks, topology=labsim.topology(topology).with_device(gpu),
                               algorithm=algorithm)
        return name, priced.seconds

    return TrtStepPricer(spec, gpu, cfg, graph_sizes(cfg), collective=collective,
                         collective_cost=cost)


def test_auto_all_reduce_is_the_cheaper_of_custom_and_nccl_on_hopper():
    auto, nccl = _pricer().eager, _pricer(allreduce_strategy="NCCL").eager
    assert auto.traffic.all_reduce == "best" and nccl.traffic.all_reduce == "auto"
    for tokens in (1, 64, 512, 4096):
        nbytes = tokens * auto.hidden * 2
        custom = labsim.collective_time("all_reduce", nbytes, ranks=4, topology="dgx-h100",
                                        algorithm="custom_ar")
        assert auto.comm_time(nbytes) == min(custom, nccl.comm_time(nbytes))
    small = 64 * auto.hidden * 2                                      # a decode batch: 1 MiB
    assert auto.comm_time(small) < 0.8 * nccl.comm_time(small)
    assert auto.step_time((), 64, 64 * 500) < nccl.step_time((), 64, 64 * 500)


def test_the_norm_after_each_all_reduce_runs_inside_its_own_kernels_on_hopper():
    """TensorRT-LLM's one-/two-shot kernels do the residual add + RMSNorm after an all-reduce
    in the same kernel (no launch of its own); after NCCL the norm is a kernel of its own."""
    auto, nccl = _pricer().eager, _pricer(allreduce_strategy="NCCL").eager
    gpu = auto.device
    assert auto.fused_norm and not nccl.fused_norm
    for tokens in (1, 64, 512):
        nbytes = tokens * auto.hidden * 2
        norm = gpu.norm_time(2 * nbytes)
        custom = labsim.collective_time("all_reduce", nbytes, ranks=4, topology="dgx-h100",
                                        algorithm="custom_ar")
        fused = custom + (norm - gpu.norm_time(0))
        assert auto.fused_comm_time(nbytes) == min(nccl.comm_time(nbytes) + norm, fused)
        gemms, norms, elementwise, all_reduces = auto.layer_parts(tokens)
        assert norms == 0.0 and all_reduces == 2 * auto.fused_comm_time(nbytes)
        unfused = nccl.layer_parts(tokens)
        # a decode batch saves two norm launches a layer, less what NCCL would have cost more
        assert sum(auto.layer_parts(tokens)) < sum(unfused) - 2 * gpu.norm_time(0) + 1e-9
    # above the kernels' 8 MiB limit the norm is NCCL's separate kernel again
    big = 8192 * auto.hidden * 2
    assert auto.fused_comm_time(big) == nccl.comm_time(big) + gpu.norm_time(2 * big)


def test_auto_is_nccl_where_tensorrt_llm_has_no_measured_table():
    """AUTO's table covers SM90 and SM100 only: on an A100 every all-reduce is NCCL's."""
    auto = _pricer("A100-SXM4-80GB", "dgx-a100").eager
    nccl = _pricer("A100-SXM4-80GB", "dgx-a100", allreduce_strategy="NCCL").eager
    assert auto.traffic.all_reduce == "auto"
    assert auto.step_time((), 64, 64 * 500) == nccl.step_time((), 64, 64 * 500)


def test_logits_are_all_gathered_to_every_rank():
    pricer = _pricer().eager
    assert pricer.traffic.logits == "all_gather"
    rows = 64
    gather = labsim.collective_time("all_gather", rows * pricer.vocab * 2, ranks=4, topology="dgx-h100")
    no_tp_traffic = _pricer(tp=1).eager
    lm_n, lm_k = pricer.lm_head
    own = pricer.device.gemm_time(rows, lm_n, lm_k, "bf16")
    sampler = pricer.head_time(rows) - own - gather
    assert sampler == pytest.approx(no_tp_traffic.head_time(rows)
                                    - no_tp_traffic.device.gemm_time(rows, *no_tp_traffic.lm_head, "bf16"))


def _experiment(strategy):
    profile = {"profile_name": "p", "request_rate": 2,
               "prompt_tokens_dist_config": {"type": "Constant", "value": 300, "is_int": True},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 40, "is_int": True}}
    cfg = {"model": "Llama-3.1-70B", "tensor_parallel_size": 4}
    if strategy:
        cfg["allreduce_strategy"] = strategy
    return {"simulation": {"random_seed": 2},
            "hardware_profile": {"device": "H100-SXM", "topology": "dgx-h100"},
            "workload": {"num_requests": 20, "client_profiles": [profile]},
            "frameworks_to_test": [{"name": "t", "type": "trtllm", "config": cfg}]}


def test_allreduce_strategy_reaches_the_engine_from_the_experiment_file():
    auto = labsim.run(_experiment(None)).summary["frameworks"]["t"]
    nccl = labsim.run(_experiment("NCCL")).summary["frameworks"]["t"]
    assert auto["config"]["allreduce_strategy"] == "AUTO"
    assert nccl["config"]["allreduce_strategy"] == "NCCL"
    assert auto["tpot_ms"]["p50"] < nccl["tpot_ms"]["p50"]


@pytest.mark.parametrize("config", [{}, {"pipeline_parallel_size": 2, "tp": 4},
                                    {"kernel_time_scale": 1.3, "cuda_graph_padding": True}])
def test_per_batch_decode_prices_equal_the_step_prices(config):
    """The per-batch-size decode pricers (``decode_price``: the PP=1 loop's, ``decode_gpu``,
    ``decode_work_terms``: the pipeline loop's and the spans') give what pricing the step
    does, bit for bit, for graph and eager batch sizes."""
    pricer = _pricer(**config)
    for b in (1, 3, 32, 33, 64, 100, 128, 300):
        for ctx in (b, 7 * b + 5, 900 * b):
            assert pricer.decode_gpu(b)(ctx) == pricer.gpu_time((), b, ctx)
            assert pricer.decode_price(b)(ctx) == pricer.step_time((), b, ctx)
            p, a, l, s, h, w, k, n = pricer.decode_work_terms(b)
            assert ((p + a * ctx) * l / s + h, w + k * ctx + n) == pricer.work((), b, ctx)

"""A job, a layout and a framework's sharding on one device: its costs, memory and results.

:func:`make_plan` prices the job and checks it fits in memory (an OOM is a
:class:`labsim.UsageError` with the breakdown and what to try); :func:`report` turns the
simulated iterations into the framework's ``summary.json`` section. Both serve the SimPy
frameworks and the Python API (:func:`labsim_training.estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim.accounting import peak_flops, utilisation
from labsim.errors import UsageError

from labsim_training.costs import Comms, JobCosts
from labsim_training.engine import peak_in_flight
from labsim_training.memory import (
    GiB,
    MemoryBreakdown,
    activation_bytes_per_layer,
    model_state_bytes,
    oom_message,
)


@dataclass
class Plan:
    framework: str
    job: object
    layout: object
    sharding: object
    device: object
    costs: JobCosts
    memory: MemoryBreakdown


def check_precision(device, precision: str) -> None:
    if not device.supports(precision if precision != "fp32" else "fp32"):
        ok = [p for p in ("fp32", "fp16", "bf16", "fp8") if device.supports(p)]
        raise UsageError(f"precision: {precision} is not supported on {device.name}; allowed: {', '.join(ok)}")


def stage_memory(costs: JobCosts, layout, sharding, j: int) -> MemoryBreakdown:
    """Bytes per GPU of pipeline stage *j* (see :mod:`labsim_training.memory`)."""
    model, job = costs.model, costs.job
    s, b, h, t = job.seq_len // layout.cp, layout.micro_batch, model.hidden_size, layout.tp
    params = costs.stage_params(j)
    experts = costs.stage_expert_params(j)
    w, g, o = model_state_bytes(params - experts, layout.dp_group, sharding, layout.precision)
    if experts:  # expert states are sharded over the ranks holding the same experts
        we, ge, oe = model_state_bytes(experts, layout.dp_group // layout.ep, sharding, layout.precision)
        w, g, o = w + we, g + ge, o + oe
    if model.architecture == "cnn":  # every convolution's output, batch-norm and ReLU outputs
        return MemoryBreakdown(w, g, o, costs.activation_bytes, sharding.bucket_bytes, j)
    heads, kv, hd = model.attention_heads(1)
    k = costs.experts_per_token  # a MoE token's MLP activations exist once per routed expert
    per_layer = activation_bytes_per_layer(
        s, b, h, heads, t, sp=layout.sp, recompute=layout.recompute, ffn=model.intermediate_size * k,
        kv_dim=kv * hd, gated=model.mlp == "gated", flash=layout.attention == "flash")
    if model.is_moe and layout.recompute != "full":  # the permuted expert inputs (2 B × k × h a token)
        per_layer += 2.0 * s * b * h * k / t
    chunk_layers = max(layout.layers_of(j, c) for c in range(layout.vpp))
    in_flight = peak_in_flight(j, layout.pp, layout.num_micro, layout.vpp, layout.schedule)
    act = in_flight * chunk_layers * per_layer
    if layout.recompute == "full":  # one layer's activations while it is recomputed
        act += activation_bytes_per_layer(s, b, h, heads, t, sp=layout.sp, recompute="selective",
                                          ffn=model.intermediate_size * k, kv_dim=kv * hd,
                                          gated=model.mlp == "gated")
    if j == 0:  # embedding dropout masks of the micro-batches in flight
        act += in_flight * s * b * h / (t if layout.sp else 1)
    if j == layout.pp - 1 and model.architecture == "decoder":  # Korthikanti: 4sbh/t·(1 + V/h)
        act += 4.0 * s * b * h / t * (1.0 + model.vocab_size / h)
    buffers = sharding.bucket_bytes
    if sharding.params and layout.dp > 1:  # the gathered layer and the one prefetched
        buffers += 2 * costs.layer_params() * 2.0
    if layout.precision == "fp8":
        buffers += fp8_state_bytes(costs, layout.stage_layers(j), sharding)
    return MemoryBreakdown(w, g, o, act, buffers, j)


#: Transformer Engine's delayed scaling keeps a history of each FP8 tensor's absolute maximum:
#: ``DelayedScaling(amax_history_len=1024)`` by default (transformer_engine.common.recipe), fp32
AMAX_HISTORY = 1024


def fp8_state_bytes(costs, layers: int, sharding) -> float:
    """What FP8 training with Transformer Engine keeps beside the 16-bit weights, per GPU:

    - each linear layer's weight cast to FP8 once per iteration and reused by every
      micro-batch (``is_first_microbatch``), and its transposed FP8 copy for the backward's
      data-gradient GEMM (Hopper's FP8 tensor cores take only the TN layout): 2 B per GEMM
      weight — gathered layer by layer, so only the live layers' under ZeRO-3 / FSDP;
    - per GEMM, three FP8 tensors (input, weight, output gradient), each with an fp32 amax
      history of :data:`AMAX_HISTORY` entries and a scale and its inverse.
    """
    gemm = costs.layer_gemm_params()
    live = 2 if sharding.params else layers
    gemms = len(costs.model.layer_gemms(costs.layout.tp))
    return 2.0 * gemm * live + layers * gemms * 3 * (AMAX_HISTORY + 2) * 4.0


def make_plan(framework: str, job, layout, sharding, device, topology=None, registry=None,
              check_memory: bool = True) -> Plan:
    """Price *job* and check its memory on *device* (raises on OOM)."""
    check_precision(device, layout.precision)
    cls = JobCosts
    if job.model.architecture == "cnn":
        from labsim_training.cnn import cnn_costs_class

        cls = cnn_costs_class()
    costs = cls(job.model, job, layout, device, Comms(device, topology, registry))
    worst = max((stage_memory(costs, layout, sharding, j) for j in range(layout.pp)),
                key=lambda mb: mb.total)
    capacity = float(getattr(device, "memory_bytes", 0) or 0)
    if check_memory and capacity and worst.total > capacity:
        raise UsageError(oom_message(worst, capacity, layout, sharding, framework, device.name,
                                     int(job.model.num_layers or 0), int(job.model.num_experts or 0)))
    return Plan(framework, job, layout, sharding, device, costs, worst)


def bottleneck(breakdown: dict, membound: float, layout, sharding, framework: str) -> dict:
    """The biggest share of the iteration and what would shrink it."""
    comm = breakdown["exposed_communication"]
    compute = breakdown["compute"]
    shares = {
        "compute": compute - membound,
        "memory bandwidth": membound + breakdown["optimizer"],
        "network": sum(comm.values()),
        "pipeline bubble": breakdown["pipeline_bubble"],
    }
    kind = max(shares, key=lambda k: shares[k])
    recs = []
    if kind == "network":
        worst = max(comm, key=lambda k: comm[k])
        if worst == "tp":
            recs.append("keep tensor_parallel within one node, or lower it and raise pipeline_parallel")
            if framework == "megatron" and not layout.sp:
                recs.append("sequence_parallel: true")
        elif worst == "ep":
            recs.append("keep the expert-parallel group inside a node (expert_parallel × "
                        "tensor_parallel ≤ GPUs per node) or lower expert_parallel")
        elif worst == "cp":
            recs.append("a smaller context_parallel, or keep it inside a node")
        elif worst == "dp":
            if not sharding.overlap_grad_reduce:
                recs.append("overlap_grad_reduce: true")
            recs.append("a larger micro_batch_size or global batch (more compute per gradient "
                        "reduction), or fewer data-parallel ranks")
            if sharding.params:
                recs.append("a lower ZeRO stage / sharding strategy if memory allows")
        else:
            recs.append("fewer pipeline stages, or a faster inter-node network")
    elif kind == "pipeline bubble":
        recs.append(f"more micro-batches per replica (now {layout.num_micro}: a smaller "
                    "micro_batch_size or a larger global batch)")
        if framework == "megatron":
            recs.append("virtual_pipeline_stages > 1 (interleaved 1F1B)")
            recs.append("a smaller pipeline_parallel")
    elif kind == "memory bandwidth":
        recs.append("a larger micro_batch_size (element-wise kernels and the optimizer step are "
                    "bound by memory bandwidth)")
    else:
        if layout.recompute == "full":
            recs.append("recompute: selective (full recompute repeats the forward)")
        recs.append("compute-bound: a faster GPU or more GPUs")
    return {"kind": kind, "seconds": shares, "recommendations": recs}


#: iterations whose times summary.json lists one by one (the mean covers all)
MAX_LISTED = 1000


def report(plan: Plan, iterations: list[float], result, accounting=None, owner: str = "") -> dict:
    """The framework's ``summary.json`` section from the simulated *iterations* (seconds each) and
    the first iteration's :class:`~labsim_training.engine.IterationResult`."""
    lay, job, dev, costs = plan.layout, plan.job, plan.device, plan.costs
    mean = sum(iterations) / len(iterations)
    world = lay.world
    model_flops = costs.model_flops_per_iteration()
    hw_flops_gpu = sum(a.flops for a in result.stages) / lay.pp  # per GPU (stage mean)
    util = utilisation(busy_s=mean, groups=1, window_s=mean, flops=model_flops / world,
                       bytes_moved=0.0, device=dev, dtype=lay.precision)
    peak = peak_flops(dev, lay.precision)
    bd = result.breakdown
    membound = result.stages[result.critical_stage].membound
    out = {
        "framework": plan.framework,
        "layout": {"gpus": world, "tensor_parallel": lay.tp, "pipeline_parallel": lay.pp,
                   "data_parallel": lay.dp, "context_parallel": lay.cp, "expert_parallel": lay.ep,
                   "virtual_pipeline_stages": lay.vpp,
                   "micro_batch_size": lay.micro_batch, "micro_batches_per_replica": lay.num_micro,
                   "sequence_parallel": lay.sp, "recompute": lay.recompute, "precision": lay.precision},
        "iterations": len(iterations),
        "iteration_time_s": mean,
        "iteration_times_s": list(iterations[:MAX_LISTED]),
        "tokens_per_s": job.tokens_per_iteration / mean,
        "samples_per_s": job.global_batch_size / mean,
        "model_tflops_per_gpu": model_flops / world / mean / 1e12,
        "hardware_tflops_per_gpu": hw_flops_gpu / mean / 1e12,
        "mfu": util["mfu"],
        "peak_tflops_per_gpu": peak / 1e12,
        "memory_per_gpu_gib": plan.memory.as_gib(),
        "memory_capacity_gib": float(getattr(dev, "memory_bytes", 0) or 0) / GiB,
        "time_breakdown_s": bd,
        "pipeline_bubble_fraction": bd["pipeline_bubble"] / mean if mean else 0.0,
        "critical_stage": result.critical_stage,
        "bottleneck": bottleneck(bd, membound, lay, plan.sharding, plan.framework),
    }
    if accounting is not None and owner:
        bill = accounting.bill(owner)
        tokens = job.tokens_per_iteration * len(iterations)
        out["cost"] = {**bill,
                       "usd_per_iteration": bill["usd"] / len(iterations),
                       "usd_per_billion_tokens": bill["usd"] / tokens * 1e9 if tokens else None}
    return out

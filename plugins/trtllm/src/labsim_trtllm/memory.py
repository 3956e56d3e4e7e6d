"""How many KV-cache blocks TensorRT-LLM gives one GPU of a replica.

``_torch/pyexecutor/_util.py::KvCacheCreator`` (1.0-era; docs/engine_behaviour.md
TRT §2) loads the weights, runs a profiling forward of dummy context requests
totalling ``max_num_tokens`` tokens, measures the peak (torch allocations plus
what grew outside torch: NCCL and CUDA graphs) and gives the KV cache
``free_gpu_memory_fraction`` of the memory left::

    kv_bytes = fraction × (total − weights − activation_peak − non_torch)

— a fraction of what is *free*, where vLLM takes a fraction of the *total*.
Blocks = kv_bytes // (tokens_per_block × KV bytes per token), bounded by
``kv_cache_max_tokens`` when set. The activation peak reuses labsim-llm's
estimate for a ``max_num_tokens`` pass.
"""

from __future__ import annotations

from labsim.errors import UsageError
from labsim_llm.engine.memory_plan import MemoryPlan, activation_peak

from labsim_trtllm.config import TP_WORKSPACE_BYTES

GB = 1e9
#: torch-external memory the profiling pass sees grow on one GPU besides graphs (cuBLAS
#: workspaces, sampler buffers); assumption, the 0.16 GiB of the H100 log in engine_behaviour §6
NON_TORCH_BYTES = int(0.16 * 2**30)


def plan_kv_cache(model, device, cfg: dict) -> MemoryPlan:
    """The :class:`MemoryPlan` of one GPU; a :class:`UsageError` naming the field when it does not fit."""
    tp, pp = cfg["tensor_parallel_size"], cfg["pipeline_parallel_size"]
    dtype, kv_dtype = cfg["dtype"], cfg["kv_cache_dtype"]
    name = cfg.get("model_id") or getattr(model, "id", "the model")
    dev_name = getattr(device, "name", "the GPU")
    total = float(device.memory_bytes)
    weights = float(model.weight_bytes(dtype, tp, pp))
    tokens = cfg["max_num_tokens"]
    dummy_requests = -(-tokens // max(1, min(tokens, cfg["max_seq_len"])))
    act = activation_peak(model, tokens, dummy_requests, tp)
    graphs = float(cfg["cuda_graph_memory_bytes"]) if cfg["cuda_graph"] else 0.0
    non_torch = NON_TORCH_BYTES + (TP_WORKSPACE_BYTES if tp > 1 else 0)
    free = total - weights - act - non_torch - graphs
    if weights >= total or free <= 0:
        needed = int(-(-weights * tp * pp // total)) + 1
        raise UsageError(
            f"{name} needs {weights * tp * pp / GB:.0f} GB of weights in {dtype} "
            f"({weights / GB:.1f} GB per GPU at tensor_parallel_size {tp}, pipeline_parallel_size "
            f"{pp}) plus {act / GB:.1f} GB of activations for max_num_tokens {tokens}; {dev_name} "
            f"has {total / GB:.0f} GB: use tensor_parallel_size × pipeline_parallel_size ≥ "
            f"{max(needed, tp * pp + 1)} or lower max_num_tokens")
    kv = free * cfg["free_gpu_memory_fraction"]
    per_token = float(model.kv_bytes_per_token(kv_dtype, tp, pp))
    tpb = cfg["tokens_per_block"]
    block = per_token * tpb
    blocks = int(kv // block)
    if cfg.get("kv_cache_max_tokens"):
        blocks = min(blocks, -(-cfg["kv_cache_max_tokens"] // tpb))
    if blocks < 1:
        raise UsageError(
            f"{name} leaves no memory for the KV cache on {dev_name}; raise "
            f"free_gpu_memory_fraction or tensor_parallel_size, or lower max_num_tokens")
    return MemoryPlan(total, kv, weights, act, non_torch, graphs, kv, block, blocks, tpb)


__all__ = ["plan_kv_cache"]

"""How many KV-cache blocks fit on each GPU of a replica, the way vLLM v1 sizes its cache.

vLLM (``vllm/v1/worker/gpu_worker.py::determine_available_memory``, 0.10/0.11)
profiles one forward pass of ``max_num_batched_tokens`` tokens and gives the
KV cache what is left of ``gpu_memory_utilization × total memory`` after the
weights, the activation peak of that pass and the non-torch allocations
(NCCL, cuBLAS workspaces). CUDA-graph memory is not deducted in 0.8–0.11
(graphs are captured afterwards in the remaining headroom); labsim keeps a
``cuda_graph_reserve_bytes`` knob, 0 by default, for later versions.
Blocks = available // (block_size × KV bytes per token on this GPU), minus the
one "null" block vLLM reserves (docs/engine_behaviour.md §3, §6).

>>> plan = plan_memory(model, gpu, block_size=16)        # doctest: +SKIP
>>> plan.num_blocks, round(plan.kv_bytes / 2**30, 1)      # doctest: +SKIP
(27810, 54.3)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from labsim.errors import UsageError

GB = 1e9
#: non-torch memory vLLM sees grow during profiling on one GPU (CUDA context excluded, it is
#: outside the measured delta): 0.16 GiB in the H100 log quoted in docs/engine_behaviour.md §6
NON_TORCH_BYTES = int(0.16 * 2**30)
#: extra per-GPU buffers under TP (NCCL + custom all-reduce workspaces); assumption ~0.5 GiB,
#: the order of vLLM's custom all-reduce buffers (8 MiB × ranks) plus NCCL channels
TP_BUFFER_BYTES = int(0.5 * 2**30)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU of one replica and the KV blocks they leave."""

    total_bytes: float
    budget_bytes: float
    weight_bytes: float
    activation_bytes: float
    non_torch_bytes: float
    cuda_graph_bytes: float
    kv_bytes: float
    block_bytes: float
    num_blocks: int
    block_size: int

    @property
    def kv_tokens(self) -> int:
        """Tokens the cache holds."""
        return self.num_blocks * self.block_size

    def as_dict(self) -> dict:
        return {**asdict(self), "kv_tokens": self.kv_tokens}


def activation_peak(model, tokens: int, max_num_seqs: int, tp: int, act_bytes: int = 2) -> float:
    """Bytes of the profiling pass's activation peak: the widest layer intermediate plus the
    residual stream for *tokens* tokens, and the sampler's fp32 logits for its rows.

    Assumption (no closed form in vLLM, it measures): the peak is reached inside the MLP,
    holding the gate-up output (widest GEMM output), its activation (half of it), the input
    and residual — then the fp32 logits of min(max_num_seqs, tokens) rows.
    """
    widest = max(n for _, n, _, _ in model.layer_gemms(tp))
    mlp = tokens * (1.5 * widest + 2 * model.hidden_size) * act_bytes
    rows = min(max_num_seqs, tokens)
    logits = rows * model.vocab_size * 4 * 2  # logits and their softmax copy, fp32
    return float(max(mlp, logits))


#: Share of the memory budget a suggested split may fill with weights (the rest: KV cache,
#: activations), and the tensor-parallel size it prefers (one 8-GPU server).
_SUGGEST_WEIGHT_SHARE = 0.8
_SUGGEST_MAX_TP = 8


def _split_hint(model, budget: float, dtype: str, tp: int, pp: int) -> str:
    """The smallest power-of-two split (tensor parallel up to 8, then pipeline stages) whose
    weights fill at most 80 % of each GPU's budget, as advice for a model that does not fit."""
    n = 2
    while n <= 1024:
        if n > tp * pp:
            new_tp = min(n, _SUGGEST_MAX_TP)
            new_pp = n // new_tp
            try:
                per_gpu = float(model.weight_bytes(dtype, new_tp, new_pp))
                model.attention_heads(new_tp)
            except (UsageError, ValueError, AttributeError):
                per_gpu = math.inf
            if per_gpu <= _SUGGEST_WEIGHT_SHARE * budget:
                return (f"use tensor_parallel_size {new_tp} × pipeline_parallel_size {new_pp} "
                        f"({n} GPUs, {per_gpu / GB:.1f} GB of weights per GPU), or a GPU with "
                        "more memory")
        n *= 2
    return "use more GPUs (tensor_parallel_size × pipeline_parallel_size) or a larger GPU"


def plan_memory(
    model,
    device,
    *,
    block_size: int = 16,
    gpu_memory_utilization: float = 0.9,
    max_num_batched_tokens: int = 8192,
    max_num_seqs: int = 256,
    tp: int = 1,
    pp: int = 1,
    dtype: str = "bf16",
    kv_dtype: str = "bf16",
    cuda_graph_reserve_bytes: float = 0.0,
    model_name: str | None = None,
) -> MemoryPlan:
    """The :class:`MemoryPlan` of one GPU; a :class:`UsageError` naming the field when it does not fit."""
    name = model_name or getattr(model, "id", None) or getattr(model, "name", "the model")
    total = float(device.memory_bytes)
    budget = total * gpu_memory_utilization
    weights = float(model.weight_bytes(dtype, tp, pp))
    dev_name = getattr(device, "name", "the GPU")
    if weights >= budget:
        hint = _split_hint(model, budget, dtype, tp, pp)
        raise UsageError(
            f"{name} needs {weights * tp * pp / GB:.0f} GB of weights in {dtype} "
            f"({weights / GB:.1f} GB per GPU at tensor_parallel_size {tp}, pipeline_parallel_size "
            f"{pp}); {dev_name} has {total / GB:.0f} GB × gpu_memory_utilization "
            f"{gpu_memory_utilization}: {hint}"
        )
    act = activation_peak(model, max_num_batched_tokens, max_num_seqs, tp)
    non_torch = NON_TORCH_BYTES + (TP_BUFFER_BYTES if tp > 1 else 0)
    kv = budget - weights - act - non_torch - cuda_graph_reserve_bytes
    per_token = float(model.kv_bytes_per_token(kv_dtype, tp, pp))
    block = per_token * block_size
    blocks = int(kv // block) - 1 if kv > 0 else 0
    if blocks < 1:
        raise UsageError(
            f"{name} leaves no memory for the KV cache on {dev_name}: weights {weights / GB:.1f} GB + "
            f"activations {act / GB:.1f} GB per GPU exceed {total / GB:.0f} GB × "
            f"gpu_memory_utilization {gpu_memory_utilization}; raise gpu_memory_utilization, lower "
            f"max_num_batched_tokens, or raise tensor_parallel_size"
        )
    return MemoryPlan(
        total,
        budget,
        weights,
        act,
        non_torch,
        cuda_graph_reserve_bytes,
        kv,
        block,
        blocks,
        block_size,
    )


__all__ = ["MemoryPlan", "plan_memory", "activation_peak"]

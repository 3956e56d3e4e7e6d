"""Memory per GPU of a training job: weights, gradients, optimizer states, activations, buffers.

Activations follow Korthikanti et al., "Reducing Activation Recomputation in Large
Transformer Models" (MLSys'23), §4, generalised to any FFN width, gated MLPs and grouped-query
attention. Per layer and micro-batch, in bytes (16-bit activations, 1-byte dropout masks):

- stored whole on every TP rank unless sequence parallel splits them (``R``): the two
  LayerNorm inputs 4sbh, the attention and MLP inputs 2sbh + 2sbh, two dropout masks 2sbh
  → ``10sbh``;
- split over TP (``S``): Q and K 2sbh + 2sb·kv, V 2sb·kv, the projection input 2sbh, the MLP
  activations (standard: GeLU input and fc2 input 4sbf; gated: 6sbf) → ``24sbh`` for GPT;
- the attention scores, softmax, dropout mask and output ``5as²b`` (split over TP), dropped
  by selective recompute.

So ``none``: ``sbh(10 + 24/t + 5as/(ht))`` (with SP: ``sbh/t·(34 + 5as/h)``); ``selective``:
``sbh(10 + 24/t)`` (SP: ``34sbh/t``); ``full``: the layer input ``2sbh`` (SP: ``/t``).
Flash attention never materialises the scores, so it keeps what selective recompute keeps.

Model states per parameter (mixed precision with Adam): 16-bit weights (2 B), the gradient
buffer (``Sharding.grad_bytes``) and fp32 master weights + two moments (12 B), each divided by
DP where the framework shards it.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = float(1 << 30)
OPTIMIZER_BYTES = 12.0  # fp32 master weights, Adam m and v
WEIGHT_BYTES = 2.0


def activation_bytes_per_layer(s: int, b: int, h: int, a: int, t: int = 1, *, sp: bool = False,
                               recompute: str = "none", ffn: int | None = None, kv_dim: int | None = None,
                               gated: bool = False, flash: bool = False) -> float:
    """Bytes of activations one transformer layer keeps for one micro-batch (module docs)."""
    ffn = 4 * h if ffn is None else ffn
    kv_dim = h if kv_dim is None else kv_dim
    sbh = float(s) * b * h
    if recompute == "full":
        return 2.0 * sbh / (t if sp else 1)
    replicated = 10.0 * sbh
    mlp = (6.0 if gated else 4.0) * s * b * ffn
    split = 2.0 * sbh + 2.0 * s * b * kv_dim + 2.0 * s * b * kv_dim + 2.0 * sbh + mlp
    scores = 0.0 if (recompute == "selective" or flash) else 5.0 * a * float(s) * s * b
    return (replicated / (t if sp else 1)) + (split + scores) / t


@dataclass
class MemoryBreakdown:
    """Bytes per GPU of the most loaded pipeline stage."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    stage: int = 0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    def as_gib(self) -> dict:
        out = {k: getattr(self, k) / GiB for k in ("weights", "gradients", "optimizer", "activations",
                                                    "buffers")}
        out["total"] = self.total / GiB
        return out


def model_state_bytes(params: float, dp: int, sharding, precision: str = "bf16") -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes of *params* parameters on one GPU (fp32 training:
    4-byte weights and gradients, Adam's two moments, no master copy)."""
    n = sharding.shards(dp)
    fp32 = precision == "fp32"
    w = params * (4.0 if fp32 else WEIGHT_BYTES) / (n if sharding.params else 1)
    g = params * (4.0 if fp32 else sharding.grad_bytes) / (n if sharding.grads else 1)
    o = params * (8.0 if fp32 else sharding.optimizer_bytes) / (n if sharding.optimizer else 1)
    if sharding.offload_host_bw > 0:
        o = 0.0  # in host memory
    if sharding.offload_params:
        w = 0.0  # the shards in host memory; gathered layers count as buffers
    return w, g, o


def suggestions(breakdown: MemoryBreakdown, layout, sharding, framework: str, capacity: float = 0.0,
                num_layers: int = 0, experts: int = 0) -> list[str]:
    """What to change so the job fits, biggest saving first."""
    tips = []
    states = breakdown.weights + breakdown.gradients + breakdown.optimizer
    if framework == "megatron" and experts and capacity and states > 0.5 * capacity:
        # a MoE model's states are mostly experts: spread them over more data-parallel ranks
        ep = max((d for d in range(1, layout.dp + 1) if layout.dp % d == 0 and experts % d == 0), default=1)
        if ep > layout.ep:
            tips.append(f"expert_parallel: {ep}")
    if framework == "megatron" and capacity and states > 0.5 * capacity and num_layers:
        # model states shrink as 1/PP: the smallest PP (a divisor of the layers) that leaves half
        factor = states / (0.5 * capacity)
        want = layout.pp * factor
        pp = next((d for d in range(1, num_layers + 1) if num_layers % d == 0 and d >= want), num_layers)
        tips.append(f"pipeline_parallel: {pp}")
    gib = breakdown.as_gib()
    if gib["activations"] >= max(gib["weights"], gib["optimizer"]):
        if layout.recompute == "none":
            tips.append("recompute: selective")
        if layout.recompute != "full":
            tips.append("recompute: full")
        if layout.micro_batch > 1:
            tips.append(f"micro_batch_size: {max(1, layout.micro_batch // 2)}")
        if framework == "megatron" and layout.tp > 1 and not layout.sp:
            tips.append("sequence_parallel: true")
    if framework == "megatron":
        if not sharding.optimizer and layout.dp > 1:
            tips.append("distributed_optimizer: true")
        if layout.tp < 8:
            tips.append(f"tensor_parallel: {layout.tp * 2}")
        if not any(t.startswith("pipeline_parallel") for t in tips):
            tips.append(f"pipeline_parallel: {layout.pp * 2}")
    elif framework == "deepspeed":
        if not sharding.params:
            tips.append("zero_stage: 3")
    elif framework == "fsdp":
        if not sharding.params:
            tips.append("sharding: full_shard")
    elif framework == "ddp":
        tips.append("a sharded framework (deepspeed zero_stage: 3 or fsdp full_shard)")
    if layout.recompute == "none" and "recompute: selective" not in tips:
        tips.append("recompute: full")
    return tips


def oom_message(breakdown: MemoryBreakdown, capacity: float, layout, sharding, framework: str,
                device_name: str, num_layers: int = 0, experts: int = 0) -> str:
    """The error for a job that does not fit: the need, the breakdown and what to try."""
    gib = breakdown.as_gib()
    parts = sorted(((k, v) for k, v in gib.items() if k != "total"), key=lambda kv: -kv[1])
    detail = ", ".join(f"{k} {v:.1f}" for k, v in parts)
    tips = suggestions(breakdown, layout, sharding, framework, capacity, num_layers, experts)
    return (f"out of memory: needs {gib['total']:.1f} GiB per GPU of {capacity / GiB:.0f} on "
            f"{device_name} ({layout.describe()}, pipeline stage {breakdown.stage}): {detail} — "
            f"try {' or '.join(tips[:3])}")

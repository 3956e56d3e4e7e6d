"""How a job is cut over GPUs (tensor × pipeline × data parallel) and what each framework shards.

:class:`Layout` is the parallel layout and the per-micro-batch settings; :func:`make_layout`
checks it against the model and the hardware and refuses an impossible one with a
:class:`labsim.UsageError` that names the field and the values that would work.
:class:`Sharding` is a framework's policy: what of the weights, gradients and optimizer
states is split over the data-parallel ranks, and when gradients are reduced. Megatron,
DeepSpeed ZeRO, FSDP and DDP are each one :class:`Sharding` over the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim.errors import UsageError

RECOMPUTE = ("none", "selective", "full")
PRECISIONS = ("fp32", "fp16", "bf16", "fp8")


@dataclass(frozen=True)
class Layout:
    """A parallel layout: ``world = tp × pp × dp`` GPUs, ranks ordered TP fastest, then DP, then PP
    (Megatron's default order), so a TP group sits inside a node when ``tp ≤ gpus_per_node``."""

    tp: int
    pp: int
    dp: int
    micro_batch: int
    num_micro: int  # micro-batches per data-parallel replica per iteration
    vpp: int = 1
    sp: bool = False
    recompute: str = "none"
    precision: str = "bf16"
    chunk_layers: tuple[int, ...] = ()  # per virtual stage: chunk c of stage j is c·pp + j
    attention: str = "flash"
    host_kernel_s: float = 0.0
    schedule: str = "1f1b"
    straggler: tuple | None = None  # (stage, slowdown of its kernels)
    cp: int = 1  # context parallel: each sequence split over cp ranks (ring attention)
    ep: int = 1  # expert parallel: a MoE layer's experts split over ep data-parallel ranks

    @property
    def world(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def dp_group(self) -> int:
        """Ranks that hold the same weights and reduce gradients together (DP × CP)."""
        return self.dp * self.cp

    def layers_of(self, stage: int, chunk: int = 0) -> int:
        """Layers of model chunk *chunk* on pipeline stage *stage*."""
        return self.chunk_layers[chunk * self.pp + stage]

    def stage_layers(self, stage: int) -> int:
        """Layers on pipeline stage *stage* (over its chunks)."""
        return sum(self.layers_of(stage, c) for c in range(self.vpp))

    def rank(self, tp: int, dp: int, pp: int, cp: int = 0) -> int:
        """The global rank of (tensor, context, data, pipeline) coordinates (Megatron's order)."""
        return tp + self.tp * (cp + self.cp * (dp + self.dp * pp))

    def cp_ranks(self, stage: int = 0) -> list[int]:
        return [self.rank(0, 0, stage, c) for c in range(self.cp)]

    def tp_ranks(self, stage: int = 0) -> list[int]:
        return [self.rank(i, 0, stage) for i in range(self.tp)]

    def dp_ranks(self, stage: int = 0, group: int = 0) -> list[int]:
        """The representative rank's data-parallel group (*group* > 0: its first *group* ranks,
        a shard group of hybrid sharding)."""
        if group > 0:
            return [self.rank(0, k, stage) for k in range(min(group, self.dp))]
        return [self.rank(0, k, stage, c) for k in range(self.dp) for c in range(self.cp)]

    def ep_ranks(self, stage: int = 0) -> list[int]:
        """The representative rank's expert-parallel group: *ep* consecutive data-parallel ranks
        (Megatron-core's ``tp-cp-ep-dp-pp`` order), which exchange tokens by all-to-all."""
        return [self.rank(0, k, stage) for k in range(self.ep)]

    def expert_dp_ranks(self, stage: int = 0) -> list[int]:
        """The ranks holding the same experts as the representative rank (one per EP group),
        which reduce those experts' gradients together."""
        return [self.rank(0, k, stage) for k in range(0, self.dp, self.ep)]

    def replica_ranks(self, stage: int, group: int) -> list[int]:
        """The ranks holding the same shard in each shard group of *group* ranks."""
        return [self.rank(0, k, stage) for k in range(0, self.dp, group)]

    def describe(self) -> str:
        parts = ([f"TP {self.tp}"] + ([f"CP {self.cp}"] if self.cp > 1 else [])
                 + [f"PP {self.pp}", f"DP {self.dp}"] + ([f"EP {self.ep}"] if self.ep > 1 else []))
        return " × ".join(parts)


@dataclass(frozen=True)
class Sharding:
    """A framework's policy over the data-parallel ranks (see the module docs).

    :param params: weights split over DP, all-gathered layer by layer before each forward and
        backward of every micro-batch (ZeRO-3, FSDP full_shard).
    :param grads: gradients reduce-scattered and kept as a 1/DP shard (ZeRO-2/3, FSDP).
    :param optimizer: optimizer states split over DP (ZeRO-1+, Megatron distributed optimizer).
    :param every_microbatch: gradients reduced after every micro-batch's backward (ZeRO-2/3,
        FSDP) rather than once after the last (DDP, Megatron).
    :param overlap_grad_reduce: gradient collectives start layer by layer during backward.
    :param grad_bytes: bytes per parameter of the gradient buffer (Megatron keeps fp32 main grads).
    :param grad_comm_bytes: bytes per parameter the gradient collectives move.
    :param gather_after_step: sharded optimizer but replicated weights: the updated weights are
        all-gathered after the step (distributed optimizer, ZeRO-1/2).
    :param overlap_param_gather: that all-gather hides behind the next iteration's forward.
    :param bucket_bytes: communication buffers the framework keeps (DDP buckets, prefetch).
    :param optimizer_bytes: bytes per parameter of optimizer state: fp32 master weights and
        Adam's two moments (12), plus an fp32 copy of the gradients when they are 16-bit in
        Megatron (16: its documented 20 bytes per parameter with fp16).
    :param shard_group: shard over groups of this many DP ranks and replicate across groups
        (FSDP hybrid_shard: a node); 0 = over all DP ranks. -1 = a node (resolved by the
        framework from the topology).
    """

    params: bool = False
    grads: bool = False
    optimizer: bool = False
    every_microbatch: bool = False
    overlap_grad_reduce: bool = True
    grad_bytes: float = 2.0
    grad_comm_bytes: float = 2.0
    gather_after_step: bool = False
    overlap_param_gather: bool = False
    bucket_bytes: float = 0.0
    shard_group: int = 0
    optimizer_bytes: float = 12.0
    offload_host_bw: float = 0.0  # > 0: optimizer states and step on the CPU (ZeRO-Offload), B/s per GPU
    offload_params: bool = False  # ZeRO-Infinity: the 16-bit weight shards live in host memory

    def shards(self, dp: int) -> int:
        """Over how many ranks sharded states are split."""
        return min(dp, self.shard_group) if self.shard_group > 0 else dp

    @property
    def reduce_op(self) -> str:
        return "reduce_scatter" if (self.grads or self.optimizer) else "all_reduce"


def divisors(n: int, limit: int | None = None) -> list[int]:
    out = [d for d in range(1, n + 1) if n % d == 0]
    return [d for d in out if limit is None or d <= limit]


def _allowed(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:12]) + (" …" if len(values) > 12 else "")


def make_layout(model, job, *, tp: int = 1, pp: int = 1, dp: int | None = None, micro_batch: int = 1,
                vpp: int = 1, sp: bool = False, recompute: str = "none", precision: str = "bf16",
                gpus: int | None = None, first_stage_layers: int | None = None,
                last_stage_layers: int | None = None, attention: str = "flash",
                host_kernel_s: float = 0.0, schedule: str = "1f1b", straggler: tuple | None = None,
                cp: int = 1, ep: int = 1) -> Layout:
    """The checked :class:`Layout` of *job* on *gpus* GPUs (None: as many as the layout needs).

    :raises UsageError: naming the field and the allowed values.
    """
    if getattr(model, "architecture", "") == "cnn":
        from labsim_training.cnn import network

        for field, value in (("tensor_parallel", tp), ("pipeline_parallel", pp), ("virtual_pipeline_stages", vpp)):
            if value != 1:
                raise UsageError(f"{field}: {value}; {model.name} is a CNN, trained data parallel only; "
                                 "allowed: 1")
        first_stage_layers = last_stage_layers = None
    heads = int(model.num_attention_heads or 1)
    kv = int(model.num_key_value_heads or heads)
    layers = int(model.num_layers or 0) or (len(network(model)[0]) if model.architecture == "cnn" else 0)
    if heads % tp or (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        ok = [d for d in divisors(heads) if (kv % d == 0 if kv >= d else d % kv == 0)]
        raise UsageError(f"tensor_parallel: {tp} does not split the {heads} attention heads "
                         f"({kv} KV heads) of {model.name}; allowed: {_allowed(ok)}")
    chunk_layers = _stage_layers(model.name, layers, pp, vpp, first_stage_layers, last_stage_layers)
    if cp > 1 and attention != "flash":
        raise UsageError("context_parallel: ring attention runs on flash-attention kernels; use "
                         "attention: flash, or context_parallel: 1")
    if cp > 1 and job.seq_len % (2 * cp):
        ok = [c for c in divisors(job.seq_len // 2)][:12]
        raise UsageError(f"context_parallel: {cp} cannot split sequences of {job.seq_len} tokens into "
                         f"2 × {cp} equal chunks (load-balanced causal attention); allowed: {_allowed(ok)}")
    if dp is None:
        model_par = tp * pp * cp
        if gpus is None:
            dp = 1
        elif gpus % model_par:
            ok = [d for d in divisors(gpus) if d % tp == 0] or [tp]
            raise UsageError(f"data_parallel: the hardware's {gpus} GPUs are not a multiple of "
                             f"tensor_parallel × pipeline_parallel{' × context_parallel' if cp > 1 else ''} "
                             f"= {model_par}, so data parallelism would not be a whole number; use "
                             f"degrees whose product divides {gpus} (e.g. TP {_allowed(ok)}), or give "
                             "data_parallel")
        else:
            dp = gpus // model_par
    gbs = job.global_batch_size
    if gbs % (micro_batch * dp):
        ok = [b for b in divisors(gbs) if (gbs // b) % dp == 0] if gbs % dp == 0 else []
        hint = (f"allowed micro_batch_size: {_allowed(ok)}" if ok else
                f"global_batch_size must be a multiple of data_parallel {dp}")
        raise UsageError(f"micro_batch_size: global_batch_size {gbs} does not split into micro-batches "
                         f"of {micro_batch} over data_parallel {dp} (needs a multiple of "
                         f"{micro_batch * dp}); {hint}")
    num_micro = gbs // (micro_batch * dp)
    if vpp > 1 and num_micro % pp:
        raise UsageError(f"virtual_pipeline_stages: the interleaved schedule needs the "
                         f"{num_micro} micro-batches per replica to be a multiple of "
                         f"pipeline_parallel {pp}; use virtual_pipeline_stages: 1 or a global batch "
                         f"that is a multiple of {pp * micro_batch * dp}")
    if schedule == "gpipe" and vpp > 1:
        raise UsageError("virtual_pipeline_stages: GPipe has no interleaved form; allowed: 1 "
                         "(or pipeline_schedule: 1f1b)")
    if straggler is not None and not 0 <= straggler[0] < pp:
        raise UsageError(f"straggler.stage: {straggler[0]}; allowed: 0 … {pp - 1} (pipeline stages)")
    if ep > 1:
        _check_expert_parallel(model, ep, dp, tp, sp, cp)
    if recompute not in RECOMPUTE:
        raise UsageError(f"recompute: {recompute!r}; allowed: {', '.join(RECOMPUTE)}")
    return Layout(tp, pp, dp, micro_batch, num_micro, vpp, bool(sp and tp > 1), recompute, precision,
                  chunk_layers, attention, float(host_kernel_s), schedule, straggler, int(cp), int(ep))


def _check_expert_parallel(model, ep: int, dp: int, tp: int, sp: bool, cp: int) -> None:
    """Refuse an expert-parallel degree Megatron-core would refuse (or labsim does not model)."""
    experts = int(getattr(model, "num_experts", 0) or 0)
    if not experts:
        raise UsageError(f"expert_parallel: {ep}; {model.name} has no experts (not a MoE model); allowed: 1")
    if experts % ep:
        raise UsageError(f"expert_parallel: {ep} does not split the {experts} experts of {model.name}; "
                         f"allowed: {_allowed(divisors(experts))}")
    if dp % ep:
        ok = [d for d in divisors(dp) if experts % d == 0]
        raise UsageError(f"expert_parallel: {ep} must divide data_parallel {dp} (expert-parallel groups "
                         f"are carved from the data-parallel ranks); allowed: {_allowed(ok)}")
    if tp > 1 and not sp:
        # Megatron-core ModelParallelConfig.__post_init__ raises "When using expert parallelism
        # and tensor parallelism, sequence parallelism must be used"
        raise UsageError("sequence_parallel: false; Megatron needs sequence_parallel: true when "
                         "expert_parallel and tensor_parallel are both above 1")
    if cp > 1:
        raise UsageError("context_parallel: expert parallelism with context parallelism is not "
                         "modelled; allowed with expert_parallel > 1: 1")


def _stage_layers(name, layers, pp, vpp, first, last) -> tuple[int, ...]:
    """Layers of each virtual pipeline stage (model chunk), in Megatron's global order: chunk
    ``c`` of stage ``j`` is virtual stage ``c·pp + j``. With *first* / *last* the first and last
    virtual stages hold that many layers (0: only the embedding / the LM head and loss, as Llama 3
    405B's 126 layers on 16 × 8 virtual stages) and the rest split evenly."""
    stages = pp * vpp
    if pp == 1:
        if vpp > 1:
            raise UsageError("virtual_pipeline_stages: interleaving needs pipeline_parallel > 1; "
                             "allowed: 1")
        return (layers,)
    if first is None and last is None:
        if layers % pp:
            raise UsageError(f"pipeline_parallel: {pp} does not divide the {layers} layers of {name}; "
                             f"allowed: {_allowed(divisors(layers))} (or set "
                             "decoder_first_pipeline_num_layers / decoder_last_pipeline_num_layers)")
        if layers % stages:
            ok = [v for v in divisors(layers // pp)]
            raise UsageError(f"virtual_pipeline_stages: {vpp} × pipeline_parallel {pp} does not divide "
                             f"the {layers} layers of {name}; allowed: {_allowed(ok)}")
        return (layers // stages,) * stages
    even = layers // stages
    f = even if first is None else int(first)
    la = even if last is None else int(last)
    middle = layers - f - la
    if stages == 2:
        if middle:
            raise UsageError(f"decoder_first_pipeline_num_layers + decoder_last_pipeline_num_layers must "
                             f"be {layers} with 2 pipeline stages")
        return (f, la)
    if middle <= 0 or middle % (stages - 2):
        raise UsageError(f"decoder_first_pipeline_num_layers / decoder_last_pipeline_num_layers: the "
                         f"{middle} layers left for the {stages - 2} middle (virtual) stages do not "
                         "split evenly")
    return (f, *([middle // (stages - 2)] * (stages - 2)), la)

"""Prices of one training step's pieces, from the device cost model and the collectives.

A :class:`Piece` is one stretch of work on one GPU: kernel seconds (GEMMs, attention,
element-wise), the tensor-parallel collectives inside it (exposed: they sit between kernels
that need their result) and the FLOPs done. :class:`JobCosts` prices, for one layout:

- a transformer layer's forward and backward for one micro-batch: the QKV, projection and MLP
  GEMMs sharded over TP (backward = the data-gradient and weight-gradient GEMM of each,
  priced at their own shapes), causal attention (backward = 2.5× forward: FlashAttention-2's
  backward runs five matrix products where the forward runs two), LayerNorm, bias-GeLU and
  dropout-residual kernels (backward moves twice the bytes), the TP all-reduces (or, with
  sequence parallelism, all-gathers and reduce-scatters) of each sub-layer, and recompute
  (full: the whole forward again before backward; selective: the attention core);
- the embedding (first stage) and the LM head with its loss (last stage);
- the pipeline hand-off between stages and the data-parallel collectives per layer;
- the optimizer step (Adam: memory-bound, ``26 B + gradient bytes`` moved per parameter).
"""

from __future__ import annotations

from dataclasses import dataclass

ATTN_BWD_FACTOR = 2.5  # FlashAttention-2: 5 matmuls in backward vs 2 in forward
ADAM_BYTES = 26.0      # read master/m/v (12), write master/m/v (12) and the 16-bit weight (2)


@dataclass
class Piece:
    """Work on one GPU: kernel seconds, exposed TP-collective seconds, FLOPs, the memory-bound
    share of the kernel seconds, and the exposed context-parallel and expert-parallel
    (all-to-all) exchanges."""

    compute: float = 0.0
    tp: float = 0.0
    flops: float = 0.0
    membound: float = 0.0
    cp: float = 0.0  # exposed context-parallel (ring attention) exchange
    ep: float = 0.0  # MoE token dispatch and combine (all-to-all over the expert-parallel group)

    def __add__(self, other: Piece) -> Piece:
        return Piece(self.compute + other.compute, self.tp + other.tp, self.flops + other.flops,
                     self.membound + other.membound, self.cp + other.cp, self.ep + other.ep)

    def __mul__(self, k: float) -> Piece:
        return Piece(self.compute * k, self.tp * k, self.flops * k, self.membound * k, self.cp * k,
                     self.ep * k)

    @property
    def seconds(self) -> float:
        return self.compute + self.tp + self.cp + self.ep


class Comms:
    """Collective and point-to-point times on the run's topology (memoised by the collectives)."""

    def __init__(self, device, topology=None, registry=None):
        self.device = device
        self.topology = topology
        self.registry = registry
        self._ops = {}

    def op(self, name: str):
        op = self._ops.get(name)
        if op is None:
            if self.registry is not None and self.registry.has("collectives", name):
                op = self.registry.get("collectives", name)
            else:
                from labsim_collectives.plugin import BY_NAME

                op = BY_NAME[name]
            self._ops[name] = op
        return op

    def time(self, name: str, nbytes: float, ranks: list[int]) -> float:
        if len(ranks) <= 1 and name != "send_recv":
            return 0.0
        if nbytes <= 0:
            return 0.0
        r = ranks if self.topology is not None else (len(ranks) if name != "send_recv" else
                                                        max(ranks) + 1)
        return self.op(name).time(int(nbytes), ranks=r, device=self.device, topology=self.topology)


class JobCosts:
    """Prices of the pieces of one job under one layout on one device (see the module docs)."""

    def __init__(self, model, job, layout, device, comms: Comms):
        self.model, self.job, self.layout, self.device, self.comms = model, job, layout, device, comms
        # fp32 runs its matrix work in TF32 where the GPU has it (PyTorch's default for
        # convolutions and cuDNN), on the CUDA cores in FP32 before Ampere
        self.dtype = layout.precision if layout.precision != "fp32" else (
            "tf32" if device.supports("tf32") else "fp32")
        self.act_dtype = "bf16" if layout.precision in ("bf16", "fp8") else (
            "fp16" if layout.precision == "fp16" else "bf16")
        t = layout.tp
        self.tokens = layout.micro_batch * job.seq_len // layout.cp  # m of every GEMM (per CP rank)
        h = model.hidden_size
        self.act_bytes = 2.0
        self.sub_tokens = self.tokens / t if layout.sp else self.tokens  # LN/dropout rows per GPU
        self.tp_ranks = layout.tp_ranks(0)
        self.layer_fwd, self.layer_bwd = self._layer()
        self.embed_fwd, self.embed_bwd = self._embedding()
        self.head_fwd, self.head_bwd = self._head()
        nbytes = self.tokens * h * self.act_bytes / t  # Megatron scatter-gather hand-off
        self.p2p = {}
        self.p2p_call = {}  # stage → (nbytes, [from, to]) of the hand-off to the next stage
        for j in range(layout.pp):
            nxt = (j + 1) % layout.pp
            if nxt != j:
                ranks = [layout.rank(0, 0, j), layout.rank(0, 0, nxt)]
                self.p2p[j] = comms.time("send_recv", nbytes, ranks)
                self.p2p_call[j] = (nbytes, ranks)

    # -- element-wise ---------------------------------------------------------------------------

    def _ew(self, nbytes: float) -> float:
        return self.device.elementwise_time(nbytes) if nbytes > 0 else 0.0

    def _norm(self, nbytes: float) -> float:
        return self.device.norm_time(nbytes) if nbytes > 0 else 0.0

    # -- a transformer layer --------------------------------------------------------------------

    def _tp_pair(self, nbytes: float) -> float:
        """One sub-layer's TP collectives (forward or backward): an all-reduce, or with SP an
        all-gather and a reduce-scatter, of the *nbytes* activation."""
        if self.layout.tp == 1:
            return 0.0
        if self.layout.sp:
            return (self.comms.time("all_gather", nbytes, self.tp_ranks)
                    + self.comms.time("reduce_scatter", nbytes, self.tp_ranks))
        return self.comms.time("all_reduce", nbytes, self.tp_ranks)

    def _attention(self, b: int, s: int, heads: int, kv: int, hd: int) -> tuple[list, list]:
        """Kernel seconds of the attention core, forward and backward: one flash-attention kernel
        each way, or Megatron's unfused path (batched QKᵀ, fused scale-mask-softmax, dropout,
        batched AV, each materialising the ``b·heads·s²`` scores in memory: the 5as²b of
        Korthikanti's activation count)."""
        dev = self.device
        if self.layout.attention == "flash":
            # with context parallelism each rank holds 2 of the 2·cp chunks of every sequence
            # (load-balanced causal masking): 1/cp of the (query, key) pairs
            f = dev.attention_time("prefill", batch_size=b, seq_len=s, num_heads=heads, num_kv_heads=kv,
                                   head_dim=hd, dtype=self.act_dtype, kv_dtype=self.act_dtype) / self.layout.cp
            return [f], [ATTN_BWD_FACTOR * f]
        rows = b * heads * s                         # batched GEMMs as one GEMM of the same FLOPs
        scores = float(b) * heads * s * s            # elements of the score matrix
        a = self.act_bytes
        qk = dev.gemm_time(rows, s, hd, self.act_dtype)
        av = dev.gemm_time(rows, hd, s, self.act_dtype)
        softmax = self._ew(2 * scores * a)           # read scores, write probabilities
        dropout = self._ew(scores * (2 * a + 1))     # read, write, and the 1-byte mask
        fwd = [qk, softmax, dropout, av]
        bwd = [dev.gemm_time(rows, hd, s, self.act_dtype), dev.gemm_time(rows, hd, s, self.act_dtype),
               dev.gemm_time(rows, s, hd, self.act_dtype), dev.gemm_time(rows, hd, s, self.act_dtype),
               self._ew(3 * scores * a),             # softmax: probabilities and gradient in, out
               self._ew(scores * (2 * a + 1))]       # dropout: mask and gradient in, gradient out
        return fwd, bwd

    def _layer(self) -> tuple[Piece, Piece]:
        m, dev, lay, model = self.tokens, self.device, self.layout, self.model
        t, s, b = lay.tp, self.job.seq_len, lay.micro_batch
        h = model.hidden_size
        gemm_f, gemm_b = [], []
        flops = 0.0
        for label, n, k, count in model.layer_gemms(t):
            mm = m * count  # MoE: each token passes `count` experts
            if label.startswith("expert_"):
                # grouped GEMM: the rank's E/ep experts each take their share of the routed rows
                # (routing balanced, no token dropped: Megatron-core's dropless default)
                local = self.local_experts
                rows = -(-mm // local)
                gemm_f.append(local * dev.gemm_time(rows, n, k, self.dtype))
                gemm_b += [local * dev.gemm_time(rows, k, n, self.dtype),
                           local * dev.gemm_time(n, k, rows, self.dtype)]
            else:
                gemm_f.append(dev.gemm_time(mm, n, k, self.dtype))
                gemm_b += [dev.gemm_time(mm, k, n, self.dtype), dev.gemm_time(n, k, mm, self.dtype)]
            if self.dtype == "fp8":
                # FP8 GEMMs read FP8 operands: each 16-bit input is first scaled and cast (read 2 B,
                # write 1 B per element); backward casts the output gradient and the transposed
                # copies the weight-gradient GEMM reads (Transformer Engine's cast-transpose)
                gemm_f.append(self._ew(3.0 * mm * k))
                gemm_b += [self._ew(3.0 * mm * n), self._ew(3.0 * mm * k)]
            flops += 2.0 * mm * n * k
        heads, kv, hd = model.attention_heads(t)
        attn_f, attn_b = self._attention(b, s, heads, kv, hd)
        attn_flops = 4.0 * heads * hd * b * s * (s + 1) / 2.0 / lay.cp
        if lay.attention != "flash":
            attn_flops = 4.0 * heads * hd * b * s * s  # the unfused path computes the masked half too
        cp_f = cp_b = 0.0
        if lay.cp > 1:
            # ring attention: cp − 1 exchanges of a KV chunk with the CP neighbours, each hidden
            # behind the attention on the chunk already held; backward also returns dK, dV
            kv_bytes = b * (s / lay.cp) * 2 * kv * hd * self.act_bytes
            ring = lay.cp_ranks(0)
            hop = self.comms.time("send_recv", kv_bytes, [ring[0], ring[1]])
            steps = lay.cp - 1
            cp_f = max(0.0, steps * hop - sum(attn_f) * steps / lay.cp)
            cp_b = max(0.0, 2 * steps * hop - sum(attn_b) * steps / lay.cp)
        ep_f, ep_b = self._expert_exchange()
        ffn = model.intermediate_size // t * self.experts_per_token
        gated = model.mlp == "gated"
        rows = self.sub_tokens
        a = self.act_bytes
        norm = self._norm(2 * rows * h * a)                           # each of two LayerNorms
        act_fn = self._ew((3 if gated else 2) * m * ffn * a)          # bias+GeLU / SiLU·up
        dropout_add = self._ew(rows * h * (3 * a + 1))                # each of two dropout-residual adds
        ew_f = [norm, norm, act_fn, dropout_add, dropout_add]
        if model.is_moe:
            # router softmax/top-k over the experts' logits, the permutation of each token's k
            # copies into expert order and the weighted un-permutation back (read + write each)
            routed = m * self.experts_per_token * h * a
            ew_f += [self._ew(3.0 * m * model.num_experts * 4), self._ew(2 * routed), self._ew(2 * routed)]
        ew_b = [x for x in ew_f for _ in (0, 1)]                      # backward: two kernels each
        tp_one = self._tp_pair(m * h * a)
        n_comm = (2 if lay.sp else 1) if t > 1 else 0
        tp_f = [tp_one / n_comm] * (2 * n_comm) if n_comm else []     # per collective call
        fwd_k = gemm_f + attn_f + ew_f
        bwd_k = gemm_b + attn_b + ew_b
        bwd_tp = list(tp_f)
        full = lay.recompute == "full"
        if full:
            bwd_k, bwd_tp = bwd_k + fwd_k, bwd_tp + tp_f
        elif lay.recompute == "selective":
            bwd_k = bwd_k + attn_f
        fwd = self._launched(fwd_k, tp_f, flops + attn_flops, sum(ew_f), cp_f, ep_f)
        bwd_flops = 2 * flops + 2 * attn_flops + (
            flops + attn_flops if full else attn_flops if lay.recompute == "selective" else 0.0)
        bwd = self._launched(bwd_k, bwd_tp, bwd_flops,
                             sum(ew_b) + (sum(ew_f) if full else 0.0),
                             cp_b + (cp_f if full else 0.0), ep_b + (ep_f if full else 0.0))
        # model FLOPs count attention over the full sequence (the PaLM / Megatron MFU convention)
        self.layer_model_flops = 3 * (flops + 4.0 * heads * hd * b * s * s / lay.cp)
        return fwd, bwd

    def _expert_exchange(self) -> tuple[float, float]:
        """Seconds of a MoE layer's token exchange over the expert-parallel group, forward and
        backward: the dispatch all-to-all sends each of the rank's tokens (its 1/TP share under
        sequence parallelism) to the ranks of its top-k experts and the combine all-to-all brings
        the expert outputs back; backward sends the gradients both ways again. Each sits between
        the router and the experts or the experts and the residual add, so it is exposed."""
        lay = self.layout
        if lay.ep <= 1:
            return 0.0, 0.0
        rows = self.tokens / (lay.tp if lay.sp else 1) * self.experts_per_token
        nbytes = rows * self.model.hidden_size * self.act_bytes
        one = self.comms.time("all_to_all", nbytes, lay.ep_ranks(0))
        return 2 * one, 2 * one

    @property
    def experts_per_token(self) -> int:
        return int(self.model.num_experts_per_token or 1) if self.model.is_moe else 1

    @property
    def local_experts(self) -> int:
        """Experts of each MoE layer on one GPU."""
        return max(1, int(self.model.num_experts or 1) // self.layout.ep)

    def _launched(self, kernels: list, collectives: list, flops: float, membound: float,
                  cp: float = 0.0, ep: float = 0.0) -> Piece:
        """A pass of *kernels* and TP *collectives* (seconds each on the GPU), each taking at
        least the host's time to launch it: eager frameworks synchronise with the GPU often
        enough (timers, loss scaling, allocator) that a kernel shorter than its launch leaves
        the GPU waiting for the next one."""
        c = self.layout.host_kernel_s
        compute = sum(g if g > c else c for g in kernels)
        tp = sum(g if g > c else c for g in collectives)
        return Piece(compute, tp, flops, membound, cp, ep)

    def _embedding(self) -> tuple[Piece, Piece]:
        m, h, a = self.tokens, self.model.hidden_size, self.act_bytes
        look = self._ew(2 * m * h * a)
        tp = self._tp_pair(m * h * a) if self.layout.tp > 1 else 0.0
        if self.layout.sp:  # a reduce-scatter only
            tp = self.comms.time("reduce_scatter", m * h * a, self.tp_ranks)
        return Piece(look, tp, 0.0, look), Piece(2 * look, 0.0, 0.0, 2 * look)

    def _head(self) -> tuple[Piece, Piece]:
        """The final norm, the LM head GEMM and Megatron's vocab-parallel cross-entropy, which
        runs as separate fp32 element-wise kernels over the ``tokens × vocab/TP`` logits:
        forward cast (2 B in, 4 out), max (4 in), subtract (4+4), exp (4+4), sum (4), normalise
        (4+4); backward softmax gradient (4+4), one-hot subtract (4+4), scale (4+4), cast back
        (4 in, 2 out)."""
        m, dev = self.tokens, self.device
        n, k = self.model.lm_head_gemm(self.layout.tp)
        f = dev.gemm_time(m, n, k, self.dtype)
        bw = [dev.gemm_time(m, k, n, self.dtype), dev.gemm_time(n, k, m, self.dtype)]
        flops = 2.0 * m * n * k
        h = self.model.hidden_size
        final_norm = self._norm(2 * self.sub_tokens * h * self.act_bytes)
        logits = float(m) * n
        loss_f = [self._ew(logits * b) for b in (6, 4, 8, 8, 4, 8)]
        loss_b = [self._ew(logits * b) for b in (8, 8, 8, 6)]
        tp_f = []
        if self.layout.tp > 1:  # vocab-parallel cross-entropy: max, sum and target all-reduces
            tp_f = [self.comms.time("all_reduce", m * 4, self.tp_ranks)] * 3
            if self.layout.sp:
                tp_f.append(self.comms.time("all_gather", m * h * self.act_bytes, self.tp_ranks))
        fwd = self._launched([final_norm, f, *loss_f], tp_f, flops, final_norm + sum(loss_f))
        bwd = self._launched([*loss_b, *bw, final_norm, final_norm], tp_f[:1] if tp_f else [], 2 * flops,
                             2 * final_norm + sum(loss_b))
        self.head_model_flops = 3 * flops
        return fwd, bwd

    # -- a model chunk --------------------------------------------------------------------------

    def chunk(self, layers: int, first: bool, last: bool) -> tuple[Piece, Piece]:
        """Forward and backward of *layers* layers for one micro-batch, with the embedding when
        *first* and the LM head when *last*."""
        f = self.layer_fwd * layers
        b = self.layer_bwd * layers
        if first:
            f, b = f + self.embed_fwd, b + self.embed_bwd
        if last:
            f, b = f + self.head_fwd, b + self.head_bwd
        return f, b

    # -- data parallel and optimizer ------------------------------------------------------------

    def expert_layer_params(self) -> int:
        """Parameters of one layer's experts on one GPU (its E/ep experts, TP-sharded)."""
        model = self.model
        if not model.is_moe:
            return 0
        ffn = model.intermediate_size // self.layout.tp
        mats = 3 if model.mlp == "gated" else 2
        per = mats * model.hidden_size * ffn
        if model.mlp_bias:
            per += (2 * ffn if model.mlp == "gated" else ffn) + model.hidden_size
        return self.local_experts * per

    def layer_gemm_params(self) -> int:
        """Weights of one layer's GEMMs on one GPU (its own experts only): what FP8 training
        casts to FP8."""
        n = 0
        for label, nn, kk, count in self.model.layer_gemms(self.layout.tp):
            n += nn * kk * (self.local_experts if label.startswith("expert_") else 1)
        return n

    def layer_params(self) -> int:
        """Parameters of one layer on one GPU (only the experts it holds)."""
        full = int(self.model._layer_params(self.layout.tp))
        if not self.model.is_moe:
            return full
        every = self.expert_layer_params() * self.layout.ep  # all experts, TP-sharded
        return full - every + self.expert_layer_params()

    def chunk_expert_params(self, stage: int, chunk: int) -> int:
        """Expert parameters of that chunk on one GPU (reduced over the expert-data-parallel
        group, not the whole data-parallel group)."""
        return self.layout.layers_of(stage, chunk) * self.expert_layer_params()

    def stage_expert_params(self, stage: int) -> int:
        return sum(self.chunk_expert_params(stage, c) for c in range(self.layout.vpp))

    def chunk_params(self, stage: int, chunk: int) -> int:
        """Parameters of model chunk *chunk* on pipeline stage *stage* on one GPU."""
        lay = self.layout
        n = lay.layers_of(stage, chunk) * self.layer_params()
        if stage == 0 and chunk == 0:
            n += int(self.model._first_stage_params(lay.tp))
        if stage == lay.pp - 1 and chunk == lay.vpp - 1:
            n += int(self.model._last_stage_params(lay.tp, lay.pp))
        return n

    def stage_params(self, stage: int) -> int:
        return sum(self.chunk_params(stage, c) for c in range(self.layout.vpp))

    def dp_time(self, op: str, params: float, nbytes_per_param: float, stage: int) -> float:
        """One data-parallel collective over *params* parameters of *stage* (``nbytes`` = the
        whole buffer: per-rank size of an all-reduce, total of a reduce-scatter/all-gather)."""
        return self.comms.time(op, params * nbytes_per_param, self.layout.dp_ranks(stage))

    def expert_dp_call(self, op: str, params: float, nbytes_per_param: float, stage: int) -> tuple:
        """``(op, nbytes, ranks, seconds alone)`` of a collective over expert parameters: over
        the ranks that hold the same experts (data parallel / expert parallel)."""
        ranks = self.layout.expert_dp_ranks(stage)
        nbytes = params * nbytes_per_param
        return op, nbytes, ranks, self.comms.time(op, nbytes, ranks)

    def dp_call(self, op: str, params: float, nbytes_per_param: float, stage: int, group: int = 0) -> tuple:
        """``(op, nbytes, ranks, seconds alone)`` of that collective, for the shared links; over
        the first *group* DP ranks when *group* > 0, across the shard groups when < 0."""
        if group < 0:
            ranks = self.layout.replica_ranks(stage, -group)
        else:
            ranks = self.layout.dp_ranks(stage, group)
        nbytes = params * nbytes_per_param
        return op, nbytes, ranks, self.comms.time(op, nbytes, ranks)

    def shard_copy_call(self, params: float) -> tuple:
        """``("h2d", nbytes, [], seconds)``: a weight shard of *params* 16-bit parameters copied
        from host memory to the GPU (ZeRO-Infinity's parameter offload), on the comm stream."""
        nbytes = params * 2.0
        return "h2d", nbytes, [], self.device.memcpy_time(int(nbytes), "h2d")

    def optimizer_time(self, params: float, grad_bytes: float, host_bw: float = 0.0) -> float:
        """The Adam step over *params* local parameters: a memory-bound pass on the GPU, or with
        *host_bw* (B/s of host memory per GPU) ZeRO-Offload's CPU Adam over fp32 states and
        gradients followed by the copy of the updated 16-bit weights to the GPU (the gradients'
        copy to the host overlaps backward)."""
        if host_bw > 0:
            return (params * (ADAM_BYTES + 4.0) / host_bw
                    + self.device.memcpy_time(int(params * 2), "h2d"))
        return self._ew(params * (ADAM_BYTES + grad_bytes))

    def model_flops_per_iteration(self) -> float:
        """Model FLOPs of one iteration over all GPUs (forward + backward, no recompute)."""
        lay = self.layout
        per_mb = (self.layer_model_flops * self.model.num_layers) * lay.tp + self.head_model_flops * lay.tp
        return per_mb * lay.cp * lay.num_micro * lay.dp

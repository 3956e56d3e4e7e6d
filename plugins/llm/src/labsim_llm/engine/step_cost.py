"""Pricing one serving-engine step through the hardware cost model.

A step (one forward pass of the batch the scheduler formed) is a set of
prefill chunks — ``(new_tokens, prefix_len)`` — plus ``num_decodes``
sequences decoding one token over ``decode_context`` cached tokens in total.
Its time is what the device says its operations cost:

* per layer: every GEMM of the layer over all tokens of the step (memoised by
  token count; a mixture-of-experts layer as :func:`moe_gemm_time` prices it: the
  weights of every expert the step's tokens reach, their rows spread over them),
  attention for the prefill chunks and for the decodes, two
  norms and the elementwise work; under tensor parallelism two all-reduces
  per layer (``o_proj`` and ``down_proj`` are row-parallel) priced by the
  collectives plugin and memoised by size;
* once per step: the LM head over the sampled rows, sampling, the embedding
  all-reduce under TP, the pipeline-stage hand-offs under PP;
* what the engine itself moves between its TP ranks each step, as it says
  (:class:`TpStepTraffic`): the all-reduce algorithm it uses (NCCL's choice, or
  its own custom all-reduce), how the vocab-sharded logits reach its sampler
  (gathered onto one rank, or all-gathered), and the input tensors one rank
  broadcasts to the others before the forward (vLLM V0);
* launch overhead: CUDA graphs (vLLM 0.11 FULL_AND_PIECEWISE) replay a whole
  decode-only step as one launch when its token count pads to a captured
  size; a mixed step up to the largest size replays the graph pieces and
  launches attention eagerly; anything larger runs eager, and the CPU
  launching kernels overlaps the GPU running them.

It also counts the step's FLOPs and bytes for MFU and bandwidth utilisation.

Speed: a step is priced in a few microseconds. Prefill attention is memoised
per chunk; a decode-only step goes through :meth:`StepPricer.decode_step_fn`,
which looks up the batch's GEMM, LM-head and launch costs once per batch size
and prices only the attention per call, through the device's validated-once
``decode_attention_fn`` when it has one. Every fast path does the slow path's
arithmetic in the same order: the results are equal bit for bit (tested).

>>> pricer = StepPricer(model, gpu, tp=1)                       # doctest: +SKIP
>>> pricer.step_time([(512, 0)], num_decodes=32, decode_context=32 * 900)  # doctest: +SKIP
0.0213
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from labsim import native
from labsim_collectives import OWN_ALLREDUCE_KERNELS

from labsim_llm import native as llm_native
from labsim_llm.engine.step_runs import eager_step_prices, graph_step_prices

#: kernels one decoder layer launches when eager: q/k/v/o, gate-up, down GEMMs come from the
#: model; plus attention, 2 RMSNorms, rotary, activation (assumption: Llama-style layer,
#: counted from vllm/model_executor/models/llama.py)
EXTRA_KERNELS_PER_LAYER = 5
#: kernels outside the layers when eager: embedding, final norm, LM head, sampler (assumption)
KERNELS_PER_STEP = 6
#: bytes of fp32 logits the sampler reads per sampled row and vocab entry, times passes over
#: them (softmax/temperature, top-p/argmax): assumption, vLLM's sampler works in fp32
SAMPLER_PASSES = 3
#: slots of the decode price tables of one pricer, all batch sizes together (a slot per decode
#: context up to the largest seen; about 16 MB of list and 48 MB of prices when full), past
#: which they start again empty
PRICE_TABLE_SLOTS = 1 << 21
#: 2**53: every whole number below it is a double, so a float operation on whole numbers whose
#: exact result is below it gives that result exactly (and one whose exact result is not gives
#: at least it: rounding keeps the order)
EXACT_FLOAT: Final = 9007199254740992.0

#: :meth:`StepPricer.decode_work_sum`'s whole-number terms of one batch size, as floats: ``(P·L,
#: A·L, pp, H, W + N, K)`` (:meth:`StepPricer._decode_whole_terms`)
WholeTerms = tuple[float, float, float, float, float, float]


def experts_reached(tokens: int, experts: int, per_token: int) -> float:
    """Expected number of the *experts* that at least one of *tokens* is routed to, each token
    choosing *per_token* distinct experts uniformly at random: ``E·(1 − (1 − k/E)^m)``
    (an assumption: real routers are skewed, which reaches somewhat fewer experts).

    >>> round(experts_reached(1, 8, 2), 3), round(experts_reached(32, 8, 2), 3)
    (2.0, 8.0)
    """
    if tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - per_token / experts) ** tokens)


def moe_gemm_time(device, tokens: int, n: int, k: int, dtype: str, experts: int, per_token: int) -> float:
    """Seconds of one expert GEMM of a mixture-of-experts layer over *tokens* tokens: the
    ``tokens·per_token`` rows spread evenly over the experts they reach, each expert a
    ``[rows, k] × [k, n]`` GEMM streaming its own weights, run as one fused kernel (vLLM's
    ``fused_moe``): one kernel overhead, not one per expert.

    At decode batch sizes this is what makes MoE decoding memory-bound on the weights of
    nearly every expert (Mixtral: 2 of 8 at batch 1, all 8 from batch ~16), not on two.
    """
    reached = max(1.0, experts_reached(tokens, experts, per_token))
    rows = -(-tokens * per_token // int(reached))       # ceil: the rows of one expert
    overhead = float(getattr(device, "launch_overhead", 0.0) or 0.0)
    return reached * (device.gemm_time(rows, n, k, dtype) - overhead) + overhead


def capture_sizes(max_num_seqs: int, max_num_batched_tokens: int, limit: int = 512) -> list[int]:
    """vLLM's CUDA-graph capture sizes: 1, 2, 4, then multiples of 8 up to min(2·max_num_seqs, 512).

    Source: vllm/config (compilation ``cudagraph_capture_sizes``, 0.10/0.11); sizes above
    ``max_num_batched_tokens`` are dropped (docs/engine_behaviour.md §2).
    """
    top = min(2 * max_num_seqs, limit)
    sizes = [s for s in [1, 2, 4, *range(8, top + 1, 8)] if s <= max_num_batched_tokens]
    return sizes or [1]


@dataclass(frozen=True)
class TpStepTraffic:
    """What an engine moves between its tensor-parallel ranks in a step, besides the layers'
    activations (the defaults: NCCL's all-reduce, nothing else).

    :param all_reduce: algorithm of every TP all-reduce (``"auto"``: NCCL's choice;
        ``"custom_ar"``: the serving engines' own one-/two-shot kernels up to their size limit,
        labsim-collectives; ``"best"``: the cheaper of the two for each message, as an engine
        that picks each all-reduce's strategy from measured timings does).
    :param logits: how the vocab-parallel LM head's logits reach the sampler: ``None`` (not
        priced), ``"gather"`` (onto one rank) or ``"all_gather"`` (every rank samples); the
        array is ``rows × vocab`` in the activation dtype.
    :param broadcast: ``f(tokens, rows, decode_only) → sizes`` in bytes of the tensors one rank
        broadcasts to the others before each step (one collective each, on the GPU stream
        before the forward), or None.
    :param fused_norm: with ``all_reduce="best"``, the residual add + RMSNorm that follows each
        of a layer's two all-reduces runs inside the engine's own (one-/two-shot) all-reduce
        kernel, as TensorRT-LLM's ``RESIDUAL_RMS_NORM`` fusion does: priced as the norm's
        memory traffic without a kernel of its own; after NCCL it stays a kernel of its own.
        Each all-reduce takes the cheaper of the two (:meth:`StepPricer.fused_comm_time`).
    """

    all_reduce: str = "auto"
    logits: str | None = None
    broadcast: Any = None
    fused_norm: bool = False


@dataclass(frozen=True)
class StepCost:
    """Seconds of one step, with the FLOPs and DRAM bytes it moved (per GPU)."""

    seconds: float
    flops: float
    bytes: float


class DecodeRunPrices:
    """:meth:`StepPricer.decode_steps_fn`'s ``f(first_context, count)``: the prices of a run of
    decode steps of one batch size, kept by decode context in :attr:`table` (the contexts of a
    batch size recur from request to request, so a run's prices are mostly one slice of it);
    the ones not found yet are worked out by *priced* (:meth:`StepPricer.decode_run_fn`'s
    function) and kept."""

    def __init__(self, pricer: StepPricer, num_decodes: int, priced: Any):
        self.pricer = pricer
        self.num_decodes = num_decodes
        self.priced = priced
        #: the prices found so far, by decode context (None: not yet)
        self.table: list = []

    def __call__(self, first_context: int, count: int) -> list:
        b = self.num_decodes
        table = self.table
        stop = first_context + b * count
        if stop > len(table):
            pricer = self.pricer
            if pricer._table_slots + stop - len(table) > PRICE_TABLE_SLOTS:
                pricer._forget_prices()
            pricer._table_slots += stop - len(table)
            table.extend([None] * (stop - len(table)))
        got = table[first_context:stop:b]
        if None in got:
            i = got.index(None)
            got[i:] = self.priced(first_context + b * i, count - i)
            table[first_context:stop:b] = got
        return got


class StepPricer:
    """Seconds for one engine step on one model replica (``tp × pp`` GPUs).

    :param model: a :class:`labsim_llm.models.ModelSpec`.
    :param device: the GPU (a :class:`labsim.Device` of labsim-gpus).
    :param collective: ``collective(kind, nbytes, ranks) → seconds`` for TP/PP traffic.
    :param graph_sizes: CUDA-graph capture sizes (empty list: eager only).
    :param traffic: the engine's own TP traffic (:class:`TpStepTraffic`; default: NCCL
        all-reduces only).
    :param collective_cost: ``collective_cost(kind, nbytes, ranks, algorithm) → (name,
        seconds)``: *collective* with the name of the algorithm labsim-collectives picks
        (needed for :attr:`TpStepTraffic.fused_norm`: only the engines' own kernels fuse the
        norm).
    """

    def __init__(
        self,
        model,
        device,
        *,
        dtype: str = "bf16",
        kv_dtype: str = "bf16",
        tp: int = 1,
        pp: int = 1,
        collective=None,
        graph_sizes=(),
        act_bytes: int = 2,
        traffic: TpStepTraffic | None = None,
        collective_cost=None,
    ):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.kv_dtype = kv_dtype
        self.tp = int(tp)
        self.pp = int(pp)
        self.collective = collective
        self.traffic = traffic if traffic is not None else TpStepTraffic()
        self.collective_cost = collective_cost
        #: the norm after each all-reduce fused into it (see TpStepTraffic.fused_norm)
        self.fused_norm = (self.tp > 1 and collective is not None and collective_cost is not None
                           and self.traffic.fused_norm and self.traffic.all_reduce == "best")
        self.graph_sizes = sorted(graph_sizes)
        self.max_graph = self.graph_sizes[-1] if self.graph_sizes else 0
        self.layers = model.num_layers
        self.layers_per_stage = -(-int(model.num_layers) // self.pp)
        self.gemms = list(model.layer_gemms(self.tp))
        #: mixture of experts: (num_experts, experts per token); the ``expert_*`` GEMMs go through
        #: moe_gemm_time
        self.moe = ((int(model.num_experts), int(model.num_experts_per_token))
                    if getattr(model, "is_moe", False) else None)
        self.lm_head = model.lm_head_gemm(self.tp)
        self.heads, self.kv_heads, self.head_dim = model.attention_heads(self.tp)
        self.hidden = model.hidden_size
        self.vocab = model.vocab_size
        self.act_bytes = act_bytes
        self.widest = max(n for _, n, _, _ in self.gemms)
        self.launch = float(getattr(device, "launch_overhead", 0.0) or 0.0)
        self.kernels_per_layer = (
            sum(c for *_, c in self.gemms) + EXTRA_KERNELS_PER_LAYER + (2 if self.tp > 1 else 0)
        )
        self.weight_bytes = model.weight_bytes(dtype, self.tp, self.pp)
        #: bytes of expert weights on the GPU (mixture of experts; a step reads those it reaches)
        self.expert_bytes = 0.0
        if self.moe is not None:
            from labsim_llm.models import dtype_bytes

            per_layer = sum(n * k for label, n, k, _ in self.gemms if label.startswith("expert_"))
            self.expert_bytes = per_layer * self.moe[0] * self.layers_per_stage * dtype_bytes(
                model.dtype_default if dtype in (None, "auto") else dtype)
        self.kv_token_bytes = model.kv_bytes_per_token(kv_dtype, self.tp, self.pp)
        self.layer_weight_flops = 2.0 * sum(n * k * c for _, n, k, c in self.gemms)
        self._dense: dict[int, float] = {}
        self._comm: dict[int, float] = {}
        self._fused: dict[int, float] = {}
        self._head: dict[int, float] = {}
        self._pp_hops: dict[int, float] = {}    # tokens → pp_time
        self._bcast: dict[tuple[int, int, bool], float] = {}
        self._prefill: dict[tuple[int, int], float] = {}
        self._decode_steps: dict[int, Any] = {}     # batch size → decode_step_fn's price
        self._decode_terms: dict[int, tuple] = {}   # batch size → decode_work's terms
        self._decode_ints: dict[int, WholeTerms | None] = {}   # batch size → decode_work_sum's whole terms
        self._decode_runs: dict[tuple, DecodeRunPrices] = {}
        self._decode_run_fns: dict[tuple, Any] = {}
        self._table_slots = 0         # the decode price tables' length, all together
        # decode attention per layer, f(num_decodes, decode_context), validated once (a device
        # of labsim-gpus offers it; any other device is asked call by call)
        make = getattr(device, "decode_attention_fn", None)
        self._decode_attn = (make(self.heads, self.kv_heads, self.head_dim, self.kv_dtype)
                             if make is not None else None)

    # -- memoised pieces ------------------------------------------------------------------

    def padded(self, tokens: int) -> int:
        """Token count after CUDA-graph padding (unchanged above the largest capture size)."""
        if tokens > self.max_graph or not self.graph_sizes:
            return tokens
        return self.graph_sizes[bisect.bisect_left(self.graph_sizes, tokens)]

    def layer_parts(self, tokens: int) -> tuple[float, float, float, float]:
        """One layer's token-proportional work over *tokens* tokens, by kind: its GEMMs, its
        two norms, its element-wise kernels and its two TP all-reduces (0.0 without TP) —
        the pieces :meth:`dense_time` adds, for a caller that compares them one by one.

        >>> gemms, norms, elementwise, all_reduces = pricer.layer_parts(64)   # doctest: +SKIP
        """
        dev, b = self.device, self.act_bytes
        if self.moe is None:
            gemms = sum(c * dev.gemm_time(tokens, n, k, self.dtype) for _, n, k, c in self.gemms)
        else:
            experts = self.moe[0]
            gemms = sum(moe_gemm_time(dev, tokens, n, k, self.dtype, experts, c) if label.startswith("expert_")
                        else c * dev.gemm_time(tokens, n, k, self.dtype) for label, n, k, c in self.gemms)
        elementwise = dev.elementwise_time(tokens * (2 * self.hidden + 1.5 * self.widest) * b)
        if self.fused_norm:               # each norm inside (or right after) its all-reduce
            return gemms, 0.0, elementwise, 2 * self.fused_comm_time(tokens * self.hidden * b)
        norms = 2 * dev.norm_time(2 * tokens * self.hidden * b)
        tp = self.tp > 1 and self.collective is not None
        return gemms, norms, elementwise, 2 * self.comm_time(tokens * self.hidden * b) if tp else 0.0

    def dense_time(self, tokens: int) -> float:
        """All token-proportional work of every layer of one stage (:meth:`layer_parts`), plus
        the embedding's TP all-reduce."""
        hit = self._dense.get(tokens)
        if hit is not None:
            return hit
        gemms, norms, elementwise, all_reduces = self.layer_parts(tokens)
        layer = gemms
        layer += norms
        layer += elementwise
        tp = self.tp > 1 and self.collective is not None
        if tp:
            layer += all_reduces
        total = layer * self.layers_per_stage
        if tp:
            total += self.comm_time(tokens * self.hidden * self.act_bytes)  # embedding all-reduce
        self._dense[tokens] = total
        return total

    def comm_time(self, nbytes: int) -> float:
        """One TP all-reduce of *nbytes* (memoised), with the engine's algorithm."""
        hit = self._comm.get(nbytes)
        if hit is None:
            algorithm = self.traffic.all_reduce
            if algorithm == "auto":
                hit = self.collective("all_reduce", int(nbytes), self.tp)
            elif algorithm == "best":
                hit = min(self.collective("all_reduce", int(nbytes), self.tp),
                          self.collective("all_reduce", int(nbytes), self.tp, algorithm="custom_ar"))
            else:
                hit = self.collective("all_reduce", int(nbytes), self.tp, algorithm=algorithm)
            self._comm[nbytes] = hit
        return hit

    def fused_comm_time(self, nbytes: int) -> float:
        """One TP all-reduce of *nbytes* with the residual add + RMSNorm after it
        (:attr:`TpStepTraffic.fused_norm`): the cheaper of the engine's own kernel, the norm
        inside it (its DRAM traffic, no launch of its own), and NCCL followed by the norm as a
        kernel of its own (memoised)."""
        hit = self._fused.get(nbytes)
        if hit is None:
            n = int(nbytes)
            norm = self.device.norm_time(2 * nbytes)
            hit = self.collective("all_reduce", n, self.tp) + norm
            kernel, custom = self.collective_cost("all_reduce", n, self.tp, "custom_ar")
            if kernel in OWN_ALLREDUCE_KERNELS:
                hit = min(hit, custom + (norm - self.device.norm_time(0)))
            self._fused[nbytes] = hit
        return hit

    def head_time(self, rows: int) -> float:
        """LM head over *rows* sampled positions, the logits' way to the sampler under TP
        (:attr:`TpStepTraffic.logits`), then sampling over their fp32 logits."""
        hit = self._head.get(rows)
        if hit is None:
            n, k = self.lm_head
            hit = self.device.gemm_time(rows, n, k, self.dtype)
            kind = self.traffic.logits
            if kind and self.tp > 1 and self.collective is not None:
                hit += self.collective(kind, int(rows * self.vocab * self.act_bytes), self.tp)
            hit += self.device.elementwise_time(rows * self.vocab * 4 * SAMPLER_PASSES)
            self._head[rows] = hit
        return hit

    def broadcast_time(self, tokens: int, rows: int, decode_only: bool) -> float:
        """One stage's input broadcasts before a step of *tokens* tokens over *rows* sequences
        (:attr:`TpStepTraffic.broadcast`; 0 when the engine broadcasts nothing), memoised."""
        make = self.traffic.broadcast
        if make is None or self.tp <= 1 or self.collective is None:
            return 0.0
        key = (tokens, rows, decode_only)
        hit = self._bcast.get(key)
        if hit is None:
            hit = 0.0
            for nbytes in make(tokens, rows, decode_only):
                if nbytes > 0:
                    hit += self.collective("broadcast", int(nbytes), self.tp)
            if len(self._bcast) >= 65536:
                self._bcast.clear()
            self._bcast[key] = hit
        return hit

    def decode_attention(self, num_decodes: int, decode_context: int) -> float:
        """One stage's decode attention for *num_decodes* sequences over *decode_context* tokens."""
        if num_decodes <= 0:
            return 0.0
        if self._decode_attn is not None and decode_context >= num_decodes:
            return self._decode_attn(num_decodes, decode_context) * self.layers_per_stage
        per_layer = self.device.decode_attention_time_from_totals(
            num_decodes, decode_context, self.heads, self.kv_heads, self.head_dim, self.kv_dtype
        )
        return per_layer * self.layers_per_stage

    def prefill_attention(self, chunks) -> float:
        """One stage's attention for prefill chunks ``(new_tokens, prefix_len)``."""
        memo = self._prefill
        total = 0.0
        for new, prefix in chunks:
            hit = memo.get((new, prefix))
            if hit is None:
                hit = self.device.attention_time(
                    "prefill",
                    batch_size=1,
                    seq_len=new,
                    prefix_len=prefix,
                    num_heads=self.heads,
                    num_kv_heads=self.kv_heads,
                    head_dim=self.head_dim,
                    kv_dtype=self.kv_dtype,
                )
                if len(memo) >= 65536:
                    memo.clear()
                memo[(new, prefix)] = hit
            total += hit
        return total * self.layers_per_stage

    def pp_time(self, tokens: int) -> float:
        """Hidden-state hand-offs between the ``pp`` stages.

        Stage *s* holds ranks ``s·tp … s·tp + tp − 1`` (vLLM's order: TP innermost), so its
        first rank hands over to rank ``(s + 1)·tp``: over NVLink inside a server, over the
        network when the two stages sit on different nodes (e.g. TP 8 × PP 2 on DGX H100).
        """
        if self.pp <= 1 or self.collective is None:
            return 0.0
        hit = self._pp_hops.get(tokens)
        if hit is None:
            nbytes = tokens * self.hidden * self.act_bytes
            tp = self.tp
            hit = sum(self.collective("send_recv", nbytes, [s * tp, (s + 1) * tp]) for s in range(self.pp - 1))
            if len(self._pp_hops) >= 65536:
                self._pp_hops.clear()
            self._pp_hops[tokens] = hit
        return hit

    # -- whole steps ----------------------------------------------------------------------

    def step_time(self, chunks, num_decodes: int = 0, decode_context: int = 0) -> float:
        """Seconds of one step: prefill *chunks* ``(new, prefix)`` plus *num_decodes* decodes.

        Under PP this is one batch's time through every stage in turn;
        the overlap of several batches in flight is timed by
        :class:`labsim_llm.engine.pipeline.StagePipeline`.
        """
        if not chunks:
            if num_decodes <= 0:
                return 0.0
            return self.decode_step_fn(num_decodes)(decode_context)
        # the memo tables of dense_time and head_time are looked up here first, and the input
        # broadcasts and PP hand-offs, 0.0 without TP or PP, are not asked for then: a prompt
        # step is priced at every arrival (the same sums, in the same order)
        prefill_tokens = chunks[0][0] if len(chunks) == 1 else sum(n for n, _ in chunks)
        tokens = prefill_tokens + num_decodes
        rows = len(chunks) + num_decodes
        if tokens == 0:
            return 0.0
        graph = tokens <= self.max_graph
        gemm_tokens = self.padded(tokens) if graph else tokens
        stage = self._dense.get(gemm_tokens)
        if stage is None:
            stage = self.dense_time(gemm_tokens)
        stage += self.prefill_attention(chunks) + self.decode_attention(num_decodes, decode_context)
        stage += self.broadcast_time(gemm_tokens, rows, False) if self.tp > 1 else 0.0
        head = self._head.get(rows)
        if head is None:
            head = self.head_time(rows)
        gpu = stage * self.pp + head + (self.pp_time(tokens) if self.pp > 1 else 0.0)
        if graph and not chunks:
            return gpu + self.launch  # one full-graph replay
        if graph:
            return gpu + self.launch * (2 * self.layers + KERNELS_PER_STEP)  # pieces + attention
        launches = self.launch * (self.kernels_per_layer * self.layers + KERNELS_PER_STEP)
        return max(gpu, launches)

    def decode_times(self, num_decodes: int, contexts) -> list[float]:
        """Seconds of consecutive decode-only steps of one batch over total *contexts* each."""
        return [self.step_time((), num_decodes, int(c)) for c in contexts]

    def _decode_step_terms(self, b: int) -> tuple[bool, float, float, float, float, float]:
        """What a decode-only step of *b* sequences costs besides attention: ``(in a CUDA graph,
        dense layers, input broadcasts, LM head, PP hand-offs, launch floor)``."""
        graph = b <= self.max_graph
        tokens = self.padded(b) if graph else b
        return (graph, self.dense_time(tokens), self.broadcast_time(tokens, b, True), self.head_time(b),
                self.pp_time(b), self.launch * (self.kernels_per_layer * self.layers + KERNELS_PER_STEP))

    def decode_step_fn(self, num_decodes: int):
        """``f(decode_context)`` → :meth:`step_time` ``((), num_decodes, decode_context)``, bit
        for bit: the batch's GEMMs, LM head and launch cost are looked up once per batch size
        and only attention is priced per call (*num_decodes* ≥ 1)."""
        hit = self._decode_steps.get(num_decodes)
        if hit is not None:
            return hit
        b = num_decodes
        graph, dense, bcast, head, pp_t, launches = self._decode_step_terms(b)
        pp = self.pp
        lps = self.layers_per_stage
        launch = self.launch
        attn = self._decode_attn
        slow = self.decode_attention

        # step_time's arithmetic, in its order: stage = dense + (0.0 + attention) + broadcasts;
        # gpu = stage · pp + head + pp hand-offs; then the launch cost
        if graph:
            def price(decode_context: Any) -> float:
                a: float            # (typed: the compiled twin adds the terms unboxed)
                if attn is not None and decode_context >= b:
                    per_layer: float = attn(b, decode_context)      # (multiplied unboxed)
                    a = per_layer * lps
                else:
                    a = slow(b, decode_context)
                return (dense + (0.0 + a) + bcast) * pp + head + pp_t + launch
        else:
            def price(decode_context: Any) -> float:
                a: float            # (typed: the compiled twin adds the terms unboxed)
                if attn is not None and decode_context >= b:
                    per_layer: float = attn(b, decode_context)      # (multiplied unboxed)
                    a = per_layer * lps
                else:
                    a = slow(b, decode_context)
                gpu = (dense + (0.0 + a) + bcast) * pp + head + pp_t
                return gpu if gpu >= launches else launches

        if len(self._decode_steps) >= 65536:
            self._decode_steps.clear()
        self._decode_steps[b] = price
        return price

    def decode_run_fn(self, num_decodes: int, then: float = 0.0, and_then: float = 0.0):
        """:meth:`decode_steps_fn`'s ``f(first_context, count)`` with every price worked out
        (attention in one loop) and none kept: for runs whose contexts seldom recur, where a
        table by context would only grow and be emptied. None when the device prices decode
        attention call by call."""
        key = (num_decodes, then, and_then)
        hit = self._decode_run_fns.get(key)
        if hit is not None:
            return hit
        attn = getattr(self._decode_attn, "run", None)
        if attn is None:
            return None
        b = num_decodes
        graph, dense, bcast, head, pp_t, launches = self._decode_step_terms(b)
        pp = self.pp
        lps = self.layers_per_stage
        launch = self.launch

        # decode_step_fn's arithmetic, step by step, then the two additions
        if pp == 1 and not bcast and not pp_t:
            # the same without the terms that change nothing here (attention ≥ 0, so adding
            # 0.0 to it, 0.0 to the stage time or multiplying it by pp = 1 keeps every bit)
            if graph:
                def priced(first_context, count):
                    return graph_step_prices(attn(b, first_context, b, count), lps, dense, head,
                                             launch, then, and_then)
            else:
                def priced(first_context, count):
                    return eager_step_prices(attn(b, first_context, b, count), lps, dense, head,
                                             launches, then, and_then)
        elif graph:
            def priced(first_context, count):
                return [(dense + (0.0 + a * lps) + bcast) * pp + head + pp_t + launch + then + and_then
                        for a in attn(b, first_context, b, count)]
        else:
            def priced(first_context, count):
                out = [(dense + (0.0 + a * lps) + bcast) * pp + head + pp_t for a in attn(b, first_context, b, count)]
                return [(gpu if gpu >= launches else launches) + then + and_then for gpu in out]

        if len(self._decode_run_fns) >= 65536:
            self._decode_run_fns.clear()
        self._decode_run_fns[key] = priced
        return priced

    def decode_steps_fn(self, num_decodes: int, then: float = 0.0, and_then: float = 0.0):
        """``f(first_context, count)`` → ``[decode_step_fn(num_decodes)(first_context + i ·
        num_decodes) + then + and_then for i in range(count)]`` (a run of decode steps,
        *first_context* ≥ *num_decodes*; *then*, *and_then*: what the engine adds to a step's
        GPU time, its CPU overheads), bit for bit, with attention priced in one loop; None when
        the device prices decode attention call by call."""
        key = (num_decodes, then, and_then)
        hit = self._decode_runs.get(key)
        if hit is not None:
            return hit
        priced = self.decode_run_fn(num_decodes, then, and_then)
        if priced is None:
            return None
        prices = DecodeRunPrices(self, num_decodes, priced)
        if len(self._decode_runs) >= 65536:
            self._forget_prices()
            self._decode_runs.clear()
        self._decode_runs[key] = prices
        return prices

    def _forget_prices(self) -> None:
        """Empty the decode price tables (they would outgrow :data:`PRICE_TABLE_SLOTS`)."""
        for prices in self._decode_runs.values():
            prices.table.clear()
        self._table_slots = 0

    def work(self, chunks, num_decodes: int = 0, decode_context: int = 0) -> tuple[float, int | float]:
        """(FLOPs, DRAM bytes) one GPU of the replica does in this step, unpadded.

        FLOPs: 2·m·n·k per GEMM, 4·q·kv·d per head for attention (causal within a
        chunk). Bytes: weights once, the KV cache read, the new KV written.
        """
        if not chunks:
            return self.decode_work(num_decodes, decode_context)
        if len(chunks) == 1:
            # one chunk (a step at a prompt's arrival): the sums below of one term each (0 + x is x)
            (new, prefix), = chunks
            prefill_tokens, attn_chunks, kv_chunks = new, new * (prefix + new / 2), prefix + new
        else:
            prefill_tokens = sum(n for n, _ in chunks)
            attn_chunks = sum(n * (p + n / 2) for n, p in chunks)
            kv_chunks = sum(p + n for n, p in chunks)
        tokens = prefill_tokens + num_decodes
        hd = self.heads * self.head_dim
        attn = 4.0 * hd * (decode_context + attn_chunks)
        n, k = self.lm_head
        flops = (self.layer_weight_flops * tokens + attn) * self.layers / self.pp / 1.0 + 2.0 * (
            len(chunks) + num_decodes
        ) * n * k / self.pp
        kv_read = self.kv_token_bytes * (decode_context + kv_chunks)
        nbytes = self.weights_read(tokens) + kv_read + self.kv_token_bytes * tokens
        return flops, nbytes

    def weights_read(self, tokens: int) -> int | float:
        """Weight bytes a step of *tokens* tokens streams: all of them, except the experts of a
        mixture-of-experts model that none of its tokens reach: a whole number of bytes (an
        ``int``) for a dense model, a ``float`` for a mixture of experts. (``int | float``, not
        ``float``: the compiled twin would otherwise hand back every count as a float.)"""
        if self.moe is None:
            return self.weight_bytes
        experts, per_token = self.moe
        unreached = 1.0 - min(experts, experts_reached(tokens, experts, per_token)) / experts
        return self.weight_bytes - self.expert_bytes * unreached

    def decode_work(self, num_decodes: int, decode_context: int) -> tuple[float, int | float]:
        """:meth:`work` of a decode-only step, bit for bit (and of the same types)."""
        terms = self._decode_terms.get(num_decodes)
        if terms is None:
            terms = self._decode_work_terms(num_decodes)
        per_tokens, attn_coef, layers, pp, head, weights, kv, written = terms   # (decode_work_terms)
        # flops = (lwf·b + 4.0·(heads·head_dim)·ctx)·layers / pp + 2.0·b·n·k / pp;
        # bytes = weights read + kv·ctx + kv·b (the terms without ctx found once per b)
        flops = (per_tokens + attn_coef * decode_context) * layers / pp + head
        nbytes = weights + kv * decode_context + written
        return flops, nbytes

    def decode_work_terms(self, num_decodes: int) -> tuple:
        """The terms of :meth:`decode_work` that depend on the batch size alone, ``(p, a, l, s,
        h, w, k, n)``: a decode-only step over context *ctx* does ``(p + a·ctx)·l / s + h``
        FLOPs and moves ``w + k·ctx + n`` bytes, evaluated so, bit for bit (for loops that
        work out many steps of one batch)."""
        terms = self._decode_terms.get(num_decodes)
        return terms if terms is not None else self._decode_work_terms(num_decodes)

    def _decode_work_terms(self, b: int) -> tuple:
        """The terms of :meth:`decode_work` that depend on the batch size *b* alone."""
        n, k = self.lm_head
        terms = (self.layer_weight_flops * b, 4.0 * (self.heads * self.head_dim), self.layers,
                 self.pp, 2.0 * b * n * k / self.pp, self.weights_read(b), self.kv_token_bytes,
                 self.kv_token_bytes * b)
        if len(self._decode_terms) >= 65536:
            self._decode_terms.clear()
        self._decode_terms[b] = terms
        return terms

    def decode_work_sum(self, num_decodes: int, first_context: int, context_step: int,
                        steps: int) -> tuple[float, float]:
        """Σ :meth:`work` over *steps* decode-only steps of one batch whose contexts are
        ``first_context + i · context_step``, summed one step after another from 0.0 (so equal,
        bit for bit, to adding the steps' work in a loop)."""
        b = num_decodes
        whole = self._decode_ints.get(b)
        if whole is None and b not in self._decode_ints:
            whole = self._decode_whole_terms(b)
        if whole is not None and first_context >= 0 and context_step >= 0:
            # every term a whole number: each step's work, and each running sum, is a whole
            # number as well, so while none passes 2**53 every operation of the loop below is
            # exact and its sums are the exact sums, found here in closed form — in floats, each
            # operation exact while its result stays below 2**53 (checked on the largest: the
            # sums only grow, and pp divides P·L and A·L)
            PL, AL, PP, H, WN, K = whole
            m = float(steps)
            last = float(first_context + context_step * (steps - 1))
            contexts = m * first_context + float(context_step * (steps * (steps - 1) // 2))
            summed = m * PL + AL * contexts
            all_flops = summed / PP + m * H
            all_bytes = m * WN + K * contexts
            if (summed < EXACT_FLOAT and all_flops < EXACT_FLOAT and all_bytes < EXACT_FLOAT
                    and PL + AL * last < EXACT_FLOAT):
                return all_flops, all_bytes
        # work()'s arithmetic with chunks = (): attn = 4.0·hd·(ctx + 0); the flops'
        # "/ self.pp / 1.0" (dividing by 1.0 changes nothing); kv_read = kv·(ctx + 0)
        attn_coef = 4.0 * (self.heads * self.head_dim)
        per_tokens = self.layer_weight_flops * b
        layers, pp = self.layers, self.pp
        n, k = self.lm_head
        head = 2.0 * b * n * k / pp
        kv = self.kv_token_bytes
        weights = self.weights_read(b)
        written = kv * b
        if steps >= 40:
            # the loop below as arrays (quicker from 40 steps on): the same operations, summed in order (accumulate)
            ctxs = first_context + context_step * np.arange(steps, dtype=np.int64)
            flops = np.add.accumulate((per_tokens + attn_coef * ctxs) * layers / pp + head)[-1]
            nbytes = np.add.accumulate(np.asarray(weights + kv * ctxs + written, dtype=float))[-1]
            return float(flops), float(nbytes)
        flops = nbytes = 0.0
        if pp == 1 and context_step > 0:
            # the same sums without "/ pp" (dividing by 1 keeps every bit)
            for ctx in range(first_context, first_context + steps * context_step, context_step):
                flops += (per_tokens + attn_coef * ctx) * layers + head
                nbytes += weights + kv * ctx + written
            return flops, nbytes
        ctx = first_context
        for _ in range(steps):
            flops += (per_tokens + attn_coef * ctx) * layers / pp + head
            nbytes += weights + kv * ctx + written
            ctx += context_step
        return flops, nbytes

    def _decode_whole_terms(self, b: int) -> WholeTerms | None:
        """:meth:`decode_work_sum`'s terms for batch size *b*, ``(P·L, A·L, pp, H, W + N, K)`` as
        floats — a step over context *c* does ``(P + A·c)·L / pp + H`` FLOPs and moves ``W + K·c
        + N`` bytes — when each of ``P, A, L, pp, H, W, K, N`` is a whole number and *pp* divides
        ``(P + A·c)·L`` for every *c*; else None (kept per batch size)."""
        p, a, layers, pp, h, w, k, n = self.decode_work_terms(b)
        floats = (p, a, h, w, k, n)
        whole: WholeTerms | None = None
        if (all(x >= 0 and float(x).is_integer() for x in floats) and isinstance(layers, int)
                and isinstance(pp, int) and layers >= 1 and pp >= 1):
            P, A, H, W, K, N = (int(x) for x in floats)
            if (P * layers) % pp == 0 and (A * layers) % pp == 0:
                whole = (float(P * layers), float(A * layers), float(pp), float(H), float(W + N),
                         float(K))
        if len(self._decode_ints) >= 65536:
            self._decode_ints.clear()
        self._decode_ints[b] = whole
        return whole


__all__ = ["StepPricer", "StepCost", "TpStepTraffic", "capture_sizes", "experts_reached", "moe_gemm_time"]

#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two;
#: DecodeRunPrices is not swapped: each pricer, compiled or pure, makes its own module's)
PURE = {name: globals()[name] for name in __all__}

native.use_group_twin("labsim_llm", llm_native.MODULES, "step_cost", globals(), PURE)

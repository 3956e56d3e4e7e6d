"""Pricing one serving-engine step through the hardware cost model.

A step (one forward pass of the batch the scheduler formed) is a set of
prefill chunks — ``(new_tokens, prefix_len)`` — plus ``num_decodes``
sequences decoding one token over ``decode_context`` cached tokens in total.
Its time is what the device says its operations cost:

* per layer: every GEMM of the layer over all tokens of the step (memoised by
  token count), attention for the prefill chunks and for the decodes, two
  norms and the elementwise work; under tensor parallelism two all-reduces
  per layer (``o_proj`` and ``down_proj`` are row-parallel) priced by the
  collectives plugin and memoised by size;
* once per step: the LM head over the sampled rows, sampling, the embedding
  all-reduce under TP, the pipeline-stage hand-offs under PP;
* launch overhead: CUDA graphs (vLLM 0.11 FULL_AND_PIECEWISE) replay a whole
  decode-only step as one launch when its token count pads to a captured
  size; a mixed step up to the largest size replays the graph pieces and
  launches attention eagerly; anything larger runs eager, and the CPU
  launching kernels overlaps the GPU running them.

It also counts the step's FLOPs and bytes for MFU and bandwidth utilisation.

>>> pricer = StepPricer(model, gpu, tp=1)                       # doctest: +SKIP
>>> pricer.step_time([(512, 0)], num_decodes=32, decode_context=32 * 900)  # doctest: +SKIP
0.0213
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

#: kernels one decoder layer launches when eager: q/k/v/o, gate-up, down GEMMs come from the
#: model; plus attention, 2 RMSNorms, rotary, activation (assumption: Llama-style layer,
#: counted from vllm/model_executor/models/llama.py)
EXTRA_KERNELS_PER_LAYER = 5
#: kernels outside the layers when eager: embedding, final norm, LM head, sampler (assumption)
KERNELS_PER_STEP = 6
#: bytes of fp32 logits the sampler reads per sampled row and vocab entry, times passes over
#: them (softmax/temperature, top-p/argmax): assumption, vLLM's sampler works in fp32
SAMPLER_PASSES = 3


def capture_sizes(max_num_seqs: int, max_num_batched_tokens: int, limit: int = 512) -> list[int]:
    """vLLM's CUDA-graph capture sizes: 1, 2, 4, then multiples of 8 up to min(2·max_num_seqs, 512).

    Source: vllm/config (compilation ``cudagraph_capture_sizes``, 0.10/0.11); sizes above
    ``max_num_batched_tokens`` are dropped (docs/engine_behaviour.md §2).
    """
    top = min(2 * max_num_seqs, limit)
    sizes = [s for s in [1, 2, 4, *range(8, top + 1, 8)] if s <= max_num_batched_tokens]
    return sizes or [1]


@dataclass(frozen=True)
class StepCost:
    """Seconds of one step, with the FLOPs and DRAM bytes it moved (per GPU)."""

    seconds: float
    flops: float
    bytes: float


class StepPricer:
    """Seconds for one engine step on one model replica (``tp × pp`` GPUs).

    :param model: a :class:`labsim_llm.models.ModelSpec`.
    :param device: the GPU (a :class:`labsim.Device` of labsim-gpus).
    :param collective: ``collective(kind, nbytes, ranks) → seconds`` for TP/PP traffic.
    :param graph_sizes: CUDA-graph capture sizes (empty list: eager only).
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
    ):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.kv_dtype = kv_dtype
        self.tp = int(tp)
        self.pp = int(pp)
        self.collective = collective
        self.graph_sizes = sorted(graph_sizes)
        self.max_graph = self.graph_sizes[-1] if self.graph_sizes else 0
        self.layers = model.num_layers
        self.layers_per_stage = -(-model.num_layers // self.pp)
        self.gemms = list(model.layer_gemms(self.tp))
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
        self.kv_token_bytes = model.kv_bytes_per_token(kv_dtype, self.tp, self.pp)
        self.layer_weight_flops = 2.0 * sum(n * k * c for _, n, k, c in self.gemms)
        self._dense: dict[int, float] = {}
        self._comm: dict[int, float] = {}
        self._head: dict[int, float] = {}

    # -- memoised pieces ------------------------------------------------------------------

    def padded(self, tokens: int) -> int:
        """Token count after CUDA-graph padding (unchanged above the largest capture size)."""
        if tokens > self.max_graph or not self.graph_sizes:
            return tokens
        return self.graph_sizes[bisect.bisect_left(self.graph_sizes, tokens)]

    def dense_time(self, tokens: int) -> float:
        """All token-proportional work of every layer of one stage, plus TP all-reduces."""
        hit = self._dense.get(tokens)
        if hit is not None:
            return hit
        dev, b = self.device, self.act_bytes
        layer = sum(c * dev.gemm_time(tokens, n, k, self.dtype) for _, n, k, c in self.gemms)
        layer += 2 * dev.norm_time(2 * tokens * self.hidden * b)
        layer += dev.elementwise_time(tokens * (2 * self.hidden + 1.5 * self.widest) * b)
        if self.tp > 1 and self.collective is not None:
            layer += 2 * self.comm_time(tokens * self.hidden * b)
        total = layer * self.layers_per_stage
        if self.tp > 1 and self.collective is not None:
            total += self.comm_time(tokens * self.hidden * b)  # embedding all-reduce
        self._dense[tokens] = total
        return total

    def comm_time(self, nbytes: int) -> float:
        """One TP all-reduce of *nbytes* (memoised)."""
        hit = self._comm.get(nbytes)
        if hit is None:
            hit = self._comm[nbytes] = self.collective("all_reduce", int(nbytes), self.tp)
        return hit

    def head_time(self, rows: int) -> float:
        """LM head over *rows* sampled positions, then sampling over their fp32 logits."""
        hit = self._head.get(rows)
        if hit is None:
            n, k = self.lm_head
            hit = self.device.gemm_time(rows, n, k, self.dtype)
            hit += self.device.elementwise_time(rows * self.vocab * 4 * SAMPLER_PASSES)
            self._head[rows] = hit
        return hit

    def decode_attention(self, num_decodes: int, decode_context: int) -> float:
        """One stage's decode attention for *num_decodes* sequences over *decode_context* tokens."""
        if num_decodes <= 0:
            return 0.0
        per_layer = self.device.decode_attention_time_from_totals(
            num_decodes, decode_context, self.heads, self.kv_heads, self.head_dim, self.kv_dtype
        )
        return per_layer * self.layers_per_stage

    def prefill_attention(self, chunks) -> float:
        """One stage's attention for prefill chunks ``(new_tokens, prefix_len)``."""
        dev = self.device
        total = 0.0
        for new, prefix in chunks:
            total += dev.attention_time(
                "prefill",
                batch_size=1,
                seq_len=new,
                prefix_len=prefix,
                num_heads=self.heads,
                num_kv_heads=self.kv_heads,
                head_dim=self.head_dim,
                kv_dtype=self.kv_dtype,
            )
        return total * self.layers_per_stage

    def pp_time(self, tokens: int) -> float:
        """Hidden-state hand-offs between the ``pp`` stages."""
        if self.pp <= 1 or self.collective is None:
            return 0.0
        return (self.pp - 1) * self.collective(
            "send_recv", tokens * self.hidden * self.act_bytes, 2
        )

    # -- whole steps ----------------------------------------------------------------------

    def step_time(self, chunks, num_decodes: int = 0, decode_context: int = 0) -> float:
        """Seconds of one step: prefill *chunks* ``(new, prefix)`` plus *num_decodes* decodes.

        Stages of a pipeline run one after another for one batch (no
        micro-batch overlap is modelled).
        """
        prefill_tokens = sum(n for n, _ in chunks)
        tokens = prefill_tokens + num_decodes
        rows = len(chunks) + num_decodes
        if tokens == 0:
            return 0.0
        graph = tokens <= self.max_graph
        gemm_tokens = self.padded(tokens) if graph else tokens
        stage = self.dense_time(gemm_tokens)
        stage += self.prefill_attention(chunks) + self.decode_attention(num_decodes, decode_context)
        gpu = stage * self.pp + self.head_time(rows) + self.pp_time(tokens)
        if graph and not chunks:
            return gpu + self.launch  # one full-graph replay
        if graph:
            return gpu + self.launch * (2 * self.layers + KERNELS_PER_STEP)  # pieces + attention
        launches = self.launch * (self.kernels_per_layer * self.layers + KERNELS_PER_STEP)
        return max(gpu, launches)

    def decode_times(self, num_decodes: int, contexts) -> list[float]:
        """Seconds of consecutive decode-only steps of one batch over total *contexts* each."""
        return [self.step_time((), num_decodes, int(c)) for c in contexts]

    def work(self, chunks, num_decodes: int = 0, decode_context: int = 0) -> tuple[float, float]:
        """(FLOPs, DRAM bytes) one GPU of the replica does in this step, unpadded.

        FLOPs: 2·m·n·k per GEMM, 4·q·kv·d per head for attention (causal within a
        chunk). Bytes: weights once, the KV cache read, the new KV written.
        """
        prefill_tokens = sum(n for n, _ in chunks)
        tokens = prefill_tokens + num_decodes
        hd = self.heads * self.head_dim
        attn = 4.0 * hd * (decode_context + sum(n * (p + n / 2) for n, p in chunks))
        n, k = self.lm_head
        flops = (self.layer_weight_flops * tokens + attn) * self.layers / self.pp / 1.0 + 2.0 * (
            len(chunks) + num_decodes
        ) * n * k / self.pp
        kv_read = self.kv_token_bytes * (decode_context + sum(p + n for n, p in chunks))
        nbytes = self.weight_bytes + kv_read + self.kv_token_bytes * tokens
        return flops, nbytes


__all__ = ["StepPricer", "StepCost", "capture_sizes"]

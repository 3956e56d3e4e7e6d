"""The roofline cost model of single kernels, from first principles.

Pure float functions of hardware numbers (peak FLOP/s, DRAM bandwidth, SM
count) and :class:`~labsim_gpus.params.CostParams`. :class:`labsim_gpus.GPU`
wraps them with validation and memoisation; the calibrator calls them directly.

GEMM ``C[m,n] = A[m,k]·W[n,k]ᵀ``
    The output is cut into CTA tiles ``tm x tn``; the kernel library picks the
    tile (and a split-K factor when the tiles do not fill the SMs) that runs
    fastest, which we mimic by taking the minimum over the candidates. Per
    candidate: ``waves = ceil(ctas / SMs)``; one tile costs the larger of its
    tensor-core time at the per-SM peak and the time to stream its operands
    ``(tm+tn)·k`` through the on-chip bandwidth share of one SM (small tiles
    re-load operands more per FLOP); DRAM time moves A, W and C once (W
    dominates at small m). Rows are padded to the tile (tile padding), tiles
    to whole waves (wave quantisation); the two times meet in a smooth
    roofline ``(t_c^p + t_m^p)^(1/p)`` plus a fixed per-kernel overhead.

Prefill attention (flash attention, causal, optional cached prefix)
    FLOPs ``= 4·heads·head_dim·pairs`` where *pairs* counts (query, key)
    couples computed after padding each query block to ``BLOCK_M`` rows and each
    key range to ``BLOCK_N`` columns. Work spreads over the SMs, but no faster
    than the longest CTA (the last query block of the longest sequence). Each CTA
    (query block x head) also costs a fixed ``prefill_cta_s`` of one SM's time, spread
    over the SMs: what batches of many short sequences pay beyond their FLOPs. With
    ``prefill_waves`` (the cross-generation profile) the CTAs run in whole waves over the SMs,
    as GEMM tiles do.

Decode attention (flash decoding)
    Memory-bound: every sequence reads ``2·kv_heads·head_dim·bytes`` per cached
    token. One CTA per (sequence, KV head) — query heads of a GQA group share
    it — split along the context when there are too few CTAs to fill the SMs.
    Time is the larger of the DRAM stream, the longest CTA's stream at one SM's
    bandwidth share, and the (small) FLOP time, plus a fixed cost per CTA.
"""

from __future__ import annotations

import math

from labsim import native
from labsim_gpus import native as gpus_native
from labsim_gpus.params import CostParams

#: GEMM CTA tile candidates (rows of A x rows of W): the CUTLASS/cuBLAS sm80 tile shapes,
#: from the 16-row GEMV-like kernels used at tiny m to the 128x256 large-GEMM tiles.
TILES = tuple((tm, tn) for tm in (16, 32, 64, 128, 256) for tn in (64, 128, 256)
              if tm * tn <= 128 * 256)
#: smallest K slice a split-K partition is given (cuBLAS does not split below ~256)
SPLIT_K_MIN = 256
#: flash-attention forward tile for head_dim 128 on sm80 (FlashAttention-2 kernel traits:
#: kBlockM = 128 query rows, kBlockN = 64 keys)
BLOCK_M = 128
BLOCK_N = 64
#: flash-decoding key block for head_dim 128 (FlashAttention-2 ``run_mha_fwd_splitkv``)
DECODE_BLOCK_N = 128
#: how far (relative) one term of a decode price must exceed another for the smaller to be left
#: out of a run's maximum: a million times the few ulps each term's rounding may move it
DOMINANCE_MARGIN = 1.0 + 1e-9
#: fewest steps left in a run for checking the dominance to pay (it costs about two steps)
DOMINANCE_RUN = 6


def smooth_max(a: float, b: float, p: float) -> float:
    """``(a^p + b^p)^(1/p)``: the roofline corner, rounded (p → ∞ gives max)."""
    hi = a if a > b else b
    if hi <= 0.0:
        return 0.0
    lo = b if a > b else a
    return hi * (1.0 + (lo / hi) ** p) ** (1.0 / p)


def gemm_seconds(m: int, n: int, k: int, in_bytes: float, out_bytes: float, peak: float,
                 mem_bw: float, sm_count: int, p: CostParams) -> float:
    """Seconds for one GEMM of *in_bytes* operands on a device of *peak* FLOP/s."""
    sm_rate = peak * p.gemm_compute_eff * p.gemm_operand_derate / sm_count
    sm_feed = mem_bw * p.onchip_bw_ratio / sm_count
    dram_bw = mem_bw * p.gemm_mem_eff
    base_bytes = (m * k + n * k) * in_bytes + m * n * out_bytes
    best = math.inf
    for tm, tn in TILES:
        tiles = -(-m // tm) * -(-n // tn)
        splits: tuple[int, ...] = (1,)
        if tiles < sm_count:
            # a split-K kernel fills idle SMs but writes fp32 partials; the library also has
            # this tile without a split and its heuristic takes whichever is faster, so a
            # memory-bound GEMM is not slowed by partials (nor made slower by a smaller m)
            split = max(1, min(sm_count // tiles, k // SPLIT_K_MIN))
            splits = (1, split) if split > 1 else (1,)
        for split in splits:
            ctas = tiles * split
            waves = -(-ctas // sm_count)
            kk = -(-k // split)
            t_tile = max(2.0 * tm * tn * kk / sm_rate, (tm + tn) * kk * in_bytes / sm_feed)
            t_comp = waves * t_tile
            dram = base_bytes if split == 1 else base_bytes + 2.0 * m * n * 4 * split  # partials
            t = smooth_max(t_comp, dram / dram_bw, p.smooth_p)
            if t < best:
                best = t
    return best + p.kernel_overhead_s


def prefill_pairs(new: int, prefix: int) -> float:
    """Exact causal (query, key) pairs of one sequence: ``new·(prefix + (new+1)/2)``."""
    return new * (prefix + (new + 1) / 2.0)


def prefill_seconds(num_seqs: int, total_new: float, total_pairs: float, padded_rows: float,
                    longest_context: float, num_heads: int, num_kv_heads: int, head_dim: int,
                    kv_bytes: float, peak: float, mem_bw: float, sm_count: int,
                    p: CostParams) -> float:
    """Seconds for one layer of causal flash attention over a batch of prefill chunks.

    :param total_pairs: Σ exact causal pairs (see :func:`prefill_pairs`).
    :param padded_rows: Σ query rows after padding each sequence to ``BLOCK_M``.
    :param longest_context: prefix + new tokens of the longest sequence.
    """
    if total_new <= 0:
        return 0.0
    mean_ctx = total_pairs / total_new  # mean keys seen per query row
    # block padding: each query block reaches BLOCK_M/2 past the diagonal on average and rounds
    # its key range up to BLOCK_N; padded query rows see the mean context too
    pairs = total_pairs + total_new * (BLOCK_M + BLOCK_N) / 2.0 + (padded_rows - total_new) * mean_ctx
    rate = peak * p.attn_compute_eff
    t_fluid = 4.0 * head_dim * num_heads * pairs / rate
    ctas = padded_rows / BLOCK_M * num_heads     # one per query block x head
    if p.prefill_waves and ctas > sm_count:
        # whole waves: ceil(CTAs / SMs) of them, each as long as the mean CTA
        waves = ctas / sm_count
        t_fluid = t_fluid * math.ceil(waves) / waves
    longest_cta = 4.0 * head_dim * BLOCK_M * (longest_context + BLOCK_N / 2.0) / (rate / sm_count)
    act_bytes = 2.0  # q and o in the activation dtype (bf16/fp16)
    dram = (total_new * 2 * num_heads * head_dim * act_bytes
            + total_new * 2 * num_kv_heads * head_dim * kv_bytes
            + max(0.0, longest_context - total_new / num_seqs) * num_seqs * 2 * num_kv_heads
            * head_dim * kv_bytes)
    t_mem = dram / (mem_bw * p.gemm_mem_eff)
    t = smooth_max(max(t_fluid, longest_cta), t_mem, p.smooth_p)
    # fixed work per CTA (one query block x head), spread over the SMs like decode's
    t_ctas = ctas * p.prefill_cta_s / sm_count
    return t + t_ctas + p.kernel_overhead_s + p.attn_overhead_s


def num_splits(ctas: int, sm_count: int, context: float, block_n: int = DECODE_BLOCK_N,
               max_splits: int = 128) -> int:
    """Context splits flash-decoding uses for *ctas* (sequence x KV head) work items.

    The FlashAttention-2 ``num_splits_heuristic`` (flash_api.cpp): no split when the CTAs
    nearly fill the SMs; otherwise the smallest split whose wave efficiency
    ``n_waves / ceil(n_waves)`` is within 85 % of the best one.
    """
    if ctas >= 0.8 * sm_count:
        return 1
    n_blocks = max(1, -(-int(context) // block_n))
    key = (ctas, sm_count, n_blocks, max_splits)
    hit = _SPLITS.get(key)
    if hit is None:
        if len(_SPLITS) >= 1 << 16:
            _SPLITS.clear()
        hit = _SPLITS[key] = _num_splits(ctas, sm_count, n_blocks, max_splits)
    return hit


#: num_splits by (ctas, SMs, context blocks, max splits): the heuristic depends on nothing else
_SPLITS: dict[tuple, int] = {}


def _num_splits(ctas: int, sm_count: int, n_blocks: int, max_splits: int) -> int:
    """:func:`num_splits` for a context of *n_blocks* KV blocks, computed."""
    max_splits = min(max_splits, sm_count, n_blocks)
    effs: list[float] = []
    for s in range(1, max_splits + 1):
        if s > 1 and -(-n_blocks // s) == -(-n_blocks // (s - 1)):
            effs.append(0.0)
            continue
        waves = ctas * s / sm_count
        effs.append(waves / math.ceil(waves))
    best = max(effs) if effs else 0.0
    for s, eff in enumerate(effs, start=1):
        if eff > 0 and eff >= 0.85 * best:
            return s
    return 1


def decode_seconds(num_seqs: int, total_context: float, longest_context: float, num_heads: int,
                   num_kv_heads: int, head_dim: int, kv_bytes: float, peak: float,
                   mem_bw: float, sm_count: int, p: CostParams) -> float:
    """Seconds for one layer of decode attention (one new token per sequence)."""
    if num_seqs <= 0:
        return 0.0
    per_token = 2.0 * num_kv_heads * head_dim * kv_bytes
    dram = total_context * per_token + num_seqs * 2 * num_heads * head_dim * 2.0
    ctas = num_seqs * num_kv_heads
    split = num_splits(ctas, sm_count, longest_context)
    bw = mem_bw * p.decode_mem_eff
    t_stream = dram / bw
    # the busiest SM streams ceil(ctas·split / SMs) slices of the longest sequence at its share
    slice_bytes = longest_context * 2.0 * head_dim * kv_bytes / split
    t_busiest = -(-(ctas * split) // sm_count) * slice_bytes / (mem_bw * p.sm_bw_share / sm_count)
    t_flops = 4.0 * num_heads * head_dim * total_context / (peak * p.attn_compute_eff)
    t_ctas = ctas * split * p.decode_cta_s / sm_count
    t = max(t_stream, t_busiest, t_flops) + t_ctas + p.kernel_overhead_s + p.attn_overhead_s
    if p.decode_gqa_copies or p.decode_split_combine:
        t += decode_side_seconds(num_seqs, num_heads, num_kv_heads, head_dim, split, mem_bw, p)
    return t


#: the decode attention kernels whose work around the attention kernel labsim prices: the
#: CostParams flags each sets (:func:`decode_side_seconds`). On the A100 vLLM 0.14 table (FA2),
#: with the cross-generation model fitted without the A100, rows that need neither of FA2's
#: side kernels are 0.2 us off (median), rows with the copies +6.3 us, rows with a split
#: +8.9 us; on FA3's H100 table all three groups are within 1 us; on the A30 Vidur table
#: (FlashInfer) split rows are +6.0 us and grouped-query batches show no copy step
DECODE_KERNELS = {
    # mha_varlen_fwd (vLLM v1): the query reshaped into the swapped layout, the output back
    "flash-attention-2": {"decode_gqa_copies": 2.0, "decode_split_combine": 1.0},
    # mha_fwd_kvcache (sarathi-serve, Vidur's A100 rows): the swapped query stays a strided
    # view; its split rows show the combine (+8 us over the rest) and no copy step
    "flash-attention-2-kvcache": {"decode_split_combine": 1.0},
    "flashinfer": {"decode_split_combine": 1.0},
}


def decode_side_seconds(num_seqs: int, num_heads: int, num_kv_heads: int, head_dim: int,
                        split: int, mem_bw: float, p: CostParams) -> float:
    """The kernels a decode attention runs besides its attention kernel, each a memory-bound
    kernel of its own (:func:`stream_seconds`), as *p*'s flags say (:data:`DECODE_KERNELS`).

    * ``decode_gqa_copies``: FlashAttention-2 serves grouped-query decode with the query's head
      groups swapped into its sequence axis (``seqlenq_ngroups_swapped``, flash_api.cpp). With
      one sequence, or one KV head, the swapped query is still a view of the input; otherwise
      ``mha_varlen_fwd`` copies it into that layout and the output back (``mha_fwd_kvcache``
      takes it as a strided view): that many copies of ``sequences × heads × head_dim`` 16-bit
      values, each read and written.
    * ``decode_split_combine``: a context split in *split* parts (:func:`num_splits`) writes
      fp32 partial outputs and log-sum-exps, which a combine kernel reads and reduces into the
      16-bit output.

    >>> p = CostParams(kernel_overhead_s=3e-6, stream_mem_eff=1.0, decode_gqa_copies=2.0)
    >>> round(decode_side_seconds(1, 32, 8, 128, 1, 2e12, p) * 1e6, 2)   # one sequence: a view
    0.0
    >>> round(decode_side_seconds(2, 32, 8, 128, 1, 2e12, p) * 1e6, 2)   # two copies
    6.03
    """
    t = 0.0
    rows = num_seqs * num_heads
    if p.decode_gqa_copies and num_seqs >= 2 and num_kv_heads >= 2 and num_heads > num_kv_heads:
        t += p.decode_gqa_copies * stream_seconds(2.0 * rows * head_dim * 2.0, mem_bw, p)
    if p.decode_split_combine and split > 1:
        t += stream_seconds(split * rows * (head_dim + 1) * 4.0 + rows * head_dim * 2.0, mem_bw, p)
    return t


def decode_seconds_fn(num_heads: int, num_kv_heads: int, head_dim: int, kv_bytes: float,
                      peak: float, mem_bw: float, sm_count: int, p: CostParams):
    """:func:`decode_seconds` for fixed heads and hardware, as ``f(num_seqs, total_context)``
    pricing sequences of equal length (longest = mean). The same arithmetic in the same order,
    with the terms that depend on neither argument computed once: equal results, bit for bit.
    *num_seqs* must be ≥ 1. ``f.run(num_seqs, first_total, step, count)`` prices a run of decode
    steps (contexts ``first_total + i·step``) in one loop, element for element equal to ``f``.
    """
    from labsim_gpus.decode_pricer import DecodePricer      # (it imports this module)

    return DecodePricer(num_heads, num_kv_heads, head_dim, kv_bytes, peak, mem_bw, sm_count, p)


def stream_seconds(nbytes: float, mem_bw: float, p: CostParams) -> float:
    """Seconds for a memory-bound kernel moving *nbytes* through DRAM (reads + writes)."""
    return nbytes / (mem_bw * p.stream_mem_eff) + p.kernel_overhead_s


#: the pure-Python definitions, kept when the compiled twin's replace them (tests compare the two)
PURE = {
    "smooth_max": smooth_max,
    "gemm_seconds": gemm_seconds,
    "prefill_pairs": prefill_pairs,
    "prefill_seconds": prefill_seconds,
    "num_splits": num_splits,
    "decode_seconds": decode_seconds,
    "decode_side_seconds": decode_side_seconds,
    "decode_seconds_fn": decode_seconds_fn,
    "stream_seconds": stream_seconds,
}

native.use_group_twin("labsim_gpus", gpus_native.MODULES, "kernels", globals(), PURE)

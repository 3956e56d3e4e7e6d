"""The free parameters of the cost model, their datasheet-only defaults, and transfer.

The roofline in :mod:`labsim_gpus.kernels` needs, besides datasheet peaks,
a handful of **dimensionless efficiencies and fixed overheads**. They are
what ``labsim calibrate`` fits from measured tables, and what transfers from
one GPU to another:

* a profile fitted on one device applies in full, with no factor, to every device of the
  architecture generation recorded in it (its ``arch``): the A100-SXM4-80GB profile prices
  A100-PCIe, A30 and RTX-A6000; the H100-SXM profile prices H100-PCIe and H200-SXM;
* only when the profile's architecture differs from the device's does it apply with the
  per-architecture adjustments of :data:`ARCH_ADJUST` (less confidence: each factor has its
  reason, and most are assumptions) — e.g. a user's own A100 profile on a Hopper GPU;
* a profile fitted on several generations at once (``arch`` empty: the shipped
  cross-generation profile of :mod:`labsim_gpus.crossgen`, which prices the Volta, Ada and
  Blackwell presets and GPUs known by their datasheet only) applies without factors;
* a device with no profile at all uses :data:`DATASHEET_DEFAULTS`, the
  "datasheet numbers alone" model (also the calibration fits' starting point).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from labsim.errors import UsageError


@dataclass(frozen=True)
class CostParams:
    """Efficiencies (fractions of a datasheet peak) and overheads (seconds) of one device."""

    #: fraction of dense tensor peak a large GEMM tile sustains
    gemm_compute_eff: float = 0.80
    #: fraction of DRAM bandwidth a GEMM streams its operands at
    gemm_mem_eff: float = 0.80
    #: compute-bound GEMM throughput on random-valued operands (real weights and activations)
    #: relative to the calibration tables'. Tensor cores draw more power when operand bits
    #: toggle; under the board's power limit the clock drops. Tables timed on zero-filled or
    #: uninitialised tensors therefore overstate real GEMMs. 1.0: the tables used random data.
    #: Not fitted: measured in pairs (random against zeros, the same shape and GPU).
    gemm_operand_derate: float = 1.0
    #: on-chip (L2 → shared memory) operand bandwidth as a multiple of DRAM bandwidth; small
    #: tiles re-load operands more per FLOP and become bound by it
    onchip_bw_ratio: float = 3.0
    #: exponent p of the smooth roofline (t_c^p + t_m^p)^(1/p); large p → hard max
    smooth_p: float = 4.0
    #: fixed seconds per kernel: launch, ramp-up and tail (also ``Device.launch_overhead``)
    kernel_overhead_s: float = 5e-6
    #: fraction of dense peak that flash-attention's inner loop sustains (prefill)
    attn_compute_eff: float = 0.60
    #: fixed seconds of one attention kernel beyond kernel_overhead_s (softmax setup, combine)
    attn_overhead_s: float = 8e-6
    #: SM-seconds of fixed work per prefill CTA (one ``BLOCK_M`` query block x query head): the
    #: Q tile's load, the softmax state, normalising and storing O and its log-sum-exp; the
    #: prefill counterpart of decode_cta_s. It shows in batches of many short sequences (vLLM
    #: rows of 128-256 sequences of 16-512 tokens ran 45-50 % slower than the model without it,
    #: on the A100 and the H100 alike). 0 (none) in the datasheet model and in profiles fitted
    #: before it existed; ``labsim calibrate`` does not fit it, the cross-generation profile does
    prefill_cta_s: float = 0.0
    #: 1 where a prefill kernel's CTAs are priced in whole waves over the SMs (wave
    #: quantisation, as GEMM tiles are): ``ceil(CTAs / SMs)`` waves of the mean CTA when the
    #: CTAs are more than the SMs, not their fluid share of the work. A single 1,024-token causal
    #: prompt of 32 heads is 256 CTAs, 2.4 waves of an A100's 108 SMs, run in 3; left out, a
    #: fit without the A100 priced the A100's mid-size prompts 20-27 % fast. A fact of the
    #: scheduling, not fitted: 1 in the cross-generation profile; 0 (fluid) in the datasheet
    #: model and in profiles fitted before it existed, whose efficiencies absorb it
    prefill_waves: float = 0.0
    #: fraction of DRAM bandwidth that decode attention streams the KV cache at
    decode_mem_eff: float = 0.70
    #: SM-seconds of fixed work per decode CTA (one sequence x KV head x split): block-table
    #: lookups, the first dependent loads, the softmax combine
    decode_cta_s: float = 2e-6
    #: copies a grouped-query decode makes of the query or output to fit its kernel's layout:
    #: 2 for FlashAttention-2's ``mha_varlen_fwd`` (vLLM on Ampere and Ada), 0 for its
    #: ``mha_fwd_kvcache`` (a strided view) and where the kernel packs the head groups itself
    #: (FA3, FlashInfer, cuDNN, TensorRT-LLM's XQA). See :data:`labsim_gpus.kernels.DECODE_KERNELS`; a fact of the
    #: engine's kernel, not fitted
    decode_gqa_copies: float = 0.0
    #: 1 where a split context's partial results are reduced by a kernel of its own (FA2's
    #: combine, FlashInfer's merge of states), 0 where none is priced apart. Not fitted
    decode_split_combine: float = 0.0
    #: how many times its fair share (bandwidth / SMs) of DRAM bandwidth one SM can draw; fits
    #: keep it between 1 and the device's per-SM DRAM draw x SMs / bandwidth
    #: (``GPU.sm_bw_share_max``: 4.9 on an H100-SXM, from one SM measured on an H200)
    sm_bw_share: float = 1.0
    #: fraction of DRAM bandwidth element-wise, normalisation and device-to-device copies reach
    stream_mem_eff: float = 0.85
    #: fraction of the host link (PCIe) per-direction bandwidth pinned-memory copies reach
    host_link_eff: float = 0.80
    #: fixed seconds of a host<->device copy (driver, DMA setup)
    host_copy_latency_s: float = 10e-6

    def replace(self, **changes) -> CostParams:
        """A copy with *changes*; unknown names are a :class:`UsageError`."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise UsageError(f"unknown cost parameter(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(FIELDS)}")
        bad = [k for k, v in changes.items() if not (isinstance(v, (int, float)) and (
            v > 0 or (v == 0 and k in MAY_BE_ZERO)))]
        if bad:
            raise UsageError(f"cost parameter(s) {', '.join(bad)} must be positive numbers"
                             + (f" ({', '.join(MAY_BE_ZERO)} may be 0)" if MAY_BE_ZERO else ""))
        return dataclasses.replace(self, **{k: float(v) for k, v in changes.items()})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(CostParams))
#: the parameters whose default is 0 (no such cost), which a profile may therefore hold as 0
MAY_BE_ZERO = tuple(f.name for f in dataclasses.fields(CostParams) if f.default == 0)

#: The datasheet-only model. Each default is an assumption from public knowledge:
#: cuBLAS reaches ~75-85 % of dense peak on large GEMMs; streaming kernels ~80-90 % of HBM
#: bandwidth (STREAM-like); the A100 L2 delivers roughly 3x its HBM bandwidth (A100
#: whitepaper: "2.3x L2 bandwidth of V100"); FlashAttention-2 forward reaches 50-73 % of A100
#: peak (Dao 2023, Fig. 4); a kernel timed with CUDA events costs ~4-6 us even when empty, and
#: an attention call launches two or three kernels (metadata, main, split combine: ~8 us more);
#: with no better knowledge one SM is assumed to draw its fair share of DRAM bandwidth.
DATASHEET_DEFAULTS = CostParams()

#: Factors applied to a profile's parameters when it prices a device of another architecture
#: generation than the one it was fitted on. Each entry is relative to Ampere (no entry = 1):
#: :func:`transfer` multiplies by the target's factors and divides by the fitted architecture's.
#: A device of the profile's own architecture never takes a factor. No shipped preset takes
#: them: each preset is priced by the profile of its generation or by the cross-generation
#: profile (no factors). They act when a user prices a GPU with a profile of another generation
#: (``profile:``, ``with_profile``, ``labsim calibrate`` output); each entry gives its reason:
ARCH_ADJUST: dict[str, dict[str, float]] = {
    # Hopper: no shipped preset uses these since the H100-SXM profile (data/profiles/
    # h100_sxm.json) prices every Hopper preset unchanged. They are kept for an Ampere profile
    # that prices a Hopper device (a user's own A100 profile given with `profile:` or
    # `with_profile`), for which they are measured, and as Hopper's entry relative to Ampere
    # when a Hopper profile prices another architecture. Fitted by a grid search (median absolute
    # error) mapping the shipped SGLang-on-A100 profile onto the measured H100-SXM tables shipped
    # in data/calibration/h100_sxm (NVIDIA aisimulate 0.13.0.dev, Apache-2.0): 2,500 bf16 GEMM
    # rows of the vLLM 0.25.0 build (torch linear, n,k >= 512) and the vLLM FlashAttention-3
    # attention rows (bf16 KV, head_dim 128). Large GEMMs reach 800-875 of 989 TFLOP/s and
    # weight-streaming GEMMs (m <= 64) 2.4-2.6 TB/s of 3.35; FA3 decode streams the KV cache at
    # ~0.9 of HBM bandwidth against SGLang-on-A100's 0.49; FA3 prefill reaches ~0.56 of peak.
    # Caveat: decode_mem_eff x1.9 (and attn_compute_eff x0.9) mix the architecture with a kernel
    # change (SGLang's FA2-class decode on the A100 -> vLLM's FA3), so they fit an SGLang A100
    # profile and would overshoot from an A100 profile of a faster decode kernel. As reported
    # when fitted, the factors took the A100 profile from GEMM 28.6 % -> 8.0 % median error
    # (P90 66 % -> 30 %), decode attention 23.6 % -> 9.3 %, prefill 14.8 % -> 13.1 %; on the
    # shipped (thinned) rows they give 8.2 / 22.4 / 7.9 % (GEMM / prefill / decode), against
    # 6.9 / 14.5 / 4.6 % for the H100-SXM profile fitted on those rows.
    "hopper": {"gemm_compute_eff": 1.12, "gemm_mem_eff": 1.15, "kernel_overhead_s": 0.5,
               "decode_mem_eff": 1.9, "attn_compute_eff": 0.9},
    # Blackwell: no kernel tables here yet; an Ampere profile on a Blackwell GPU takes the
    # power-limited-clock assumption (0.85x GEMM) rather than the Hopper fit.
    "blackwell": {"gemm_compute_eff": 0.85},
    # Ada cards (L4, L40S, RTX 4090) are power-limited at their dense tensor peak (L4 at 72 W
    # especially); public GEMM benchmarks report ~65-75 % of dense peak, hence ~0.85x. GDDR
    # memory reaches a similar fraction of its bandwidth to HBM.
    "ada": {"gemm_compute_eff": 0.85, "attn_compute_eff": 0.9},
    # Volta: V100 cuBLAS fp16 reaches ~100-110 of 125 TFLOP/s, like Ampere's fraction.
    "volta": {},
}


def transfer(params: CostParams, fitted_arch: str, target_arch: str) -> CostParams:
    """*params* fitted on *fitted_arch*, adjusted to price a device of *target_arch*."""
    if not fitted_arch or fitted_arch == target_arch:
        return params
    factors = dict(ARCH_ADJUST.get(target_arch, {}))
    for key, back in ARCH_ADJUST.get(fitted_arch, {}).items():  # undo the source's own factor
        factors[key] = factors.get(key, 1.0) / back
    changes = {}
    for key, factor in factors.items():
        value = getattr(params, key) * factor
        if key.endswith("_eff"):
            value = min(value, 0.98)
        changes[key] = value
    return params.replace(**changes) if changes else params

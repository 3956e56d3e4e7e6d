"""L2 interference under MPS: co-running kernels evict each other's reused operands.

The device cost model prices a GEMM's DRAM traffic as its compulsory bytes (each operand read
once, ``labsim_gpus.kernels.gemm_seconds``): the panels that the CTAs of one wave re-read are
assumed to stay in L2. Alone that holds while the panels fit. Under MPS the other tenants'
kernels fill the same L2 while a tile is computed, and a panel evicted before it is re-read is
fetched from DRAM again. Per tenant, from its model and the device (nothing fitted):

- **working set** ``W``: the operand panels one wave of CTAs re-reads, ``2·√SMs · T · K · b``
  (a square block of √SMs × √SMs tiles of ``T × T`` outputs, each reading a ``T × K`` panel of
  both operands, ``b`` bytes an element); ``K`` is the tenant's GEMMs' inner dimension, weighted
  by their FLOPs (transformer layers' projections; a CNN's convolutions, ``K = c_in·k²``);
- **reuse traffic** ``ρ``: the bytes a compute-bound second would fetch from DRAM again if
  every wave re-read its panels there, in DRAM bandwidth-seconds: one wave of ``SMs`` tiles
  fetches its ``2·√SMs`` panels (``2·√SMs·T·K·b`` bytes) for ``SMs·2·T²·K`` FLOPs, so
  ``b · peak · eff / (T · √SMs · DRAM bandwidth)`` at the cost model's sustained GEMM rate. (The
  CTAs of one wave read a panel within moments of each other: that sharing needs only the
  current slices of ``K`` and survives any co-tenant, so only the reuse across waves is at risk.)
- **reuse interval** ``t_r``: how long a wave's panels must survive to be re-read by the next,
  one tile's pass over ``K``: ``2·T²·K / (peak · eff / SMs)``.

While pieces run together, piece *i* keeps ``C − Σ_{j≠i} (W_j·(1 − m_j) + F_j·t_r,i)`` of the
L2 of ``C`` bytes: the others' panels while they compute (the share ``1 − m_j`` of their time),
and what they fetch from DRAM (``F_j``: their progress rate × ``m_j`` × bandwidth, at the rates
found without L2 interference) within *i*'s reuse interval, which an LRU cache keeps ahead of
*i*'s older lines. The share of its re-reads it loses beyond what it loses alone,
``max(0, 1 − kept/W) − max(0, 1 − C/W)``, goes to DRAM: its demand on the bandwidth per unit
of progress becomes ``m + (1 − m)·ρ·lost``, and the rates are found again with it.

Sizes of L2 are NVIDIA's (cited in :data:`L2_BYTES`); ``T = 128`` is the cost model's largest
square tile. A tenant whose model or device is not known here has no working set (it is not
slowed; it still streams). Decode steps of a serving engine read their weights once (one row
tile), so their small compute share carries the tenant's working set as an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 2**20
#: L2 cache per GPU, bytes (the first matching prefix of the device name)
L2_BYTES = (
    # NVIDIA Tesla V100 GPU architecture whitepaper (2017), Table 1: "L2 Cache Size 6144 KB"
    ("V100", 6 * MIB),
    # NVIDIA A100 Tensor Core GPU architecture whitepaper (2020), Table 3: "L2 Cache Size 40 MB"
    ("A100", 40 * MIB),
    # NVIDIA H100 Tensor Core GPU architecture whitepaper (2022), Table 3, H100 SXM5: "L2 Cache Size 50 MB"
    ("H100", 50 * MIB),
    # H200 is the same GH100 die as H100 SXM5 with HBM3e (NVIDIA H200 datasheet): 50 MB of L2
    ("H200", 50 * MIB),
)
#: the cost model's largest square GEMM tile (labsim_gpus.kernels.TILES)
TILE = 128
#: bytes per GEMM operand element by precision
OPERAND_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class Reuse:
    """What one tenant's GEMMs need from the L2 (see the module docstring)."""

    working_set: float      # W, bytes
    traffic: float          # ρ, DRAM bandwidth-seconds per compute-bound second
    interval: float         # t_r, seconds


def l2_bytes(device) -> float | None:
    """The L2 size of *device*, or None when not known here."""
    name = str(getattr(device, "name", "")).upper()
    for prefix, size in L2_BYTES:
        if name.startswith(prefix):
            return float(size)
    return None


def inner_dimension(model) -> float | None:
    """The FLOP-weighted inner dimension K of *model*'s GEMMs (a transformer's layer
    projections; a CNN's convolutions as implicit GEMMs), or None."""
    if getattr(model, "architecture", "") == "cnn":
        from labsim_training.cnn import network

        convs, _head = network(model)
        weights = [(c.flops(), c.c_in * c.k * c.k) for c in convs]
    else:
        gemms = getattr(model, "layer_gemms", None)
        if gemms is None:
            return None
        weights = [(n * k * count, k) for _label, n, k, count in gemms(1)]
    total = sum(f for f, _ in weights)
    return sum(f * k for f, k in weights) / total if total > 0 else None


def reuse(device, model, precision: str) -> Reuse | None:
    """The :class:`Reuse` of a tenant running *model* at *precision* on *device*, or None."""
    k = inner_dimension(model)
    sms = getattr(device, "sm_count", 0)
    bw = getattr(device, "mem_bw", 0.0)
    peaks = getattr(device, "peak_flops", {}) or {}
    peak = peaks.get(precision) or peaks.get("bf16") or (max(peaks.values()) if peaks else 0.0)
    params = getattr(device, "params", None)
    if not k or not sms or not bw or not peak or params is None:
        return None
    b = OPERAND_BYTES.get(precision, 2)
    sustained = peak * params.gemm_compute_eff * params.gemm_operand_derate
    return Reuse(working_set=2.0 * math.sqrt(sms) * TILE * k * b,
                 traffic=b * sustained / (TILE * math.sqrt(sms) * bw),
                 interval=2.0 * TILE * TILE * k / (sustained / sms))


def extra_traffic(pieces, profiles: dict, rates: list[float], capacity: float,
                  bandwidth: float) -> list[float]:
    """Each piece's extra DRAM demand from lost L2 reuse, in bandwidth-seconds per
    alone-second: ``(1 − m)·ρ·lost`` (0 for a tenant without a :class:`Reuse`); the others fill
    the L2 at their DRAM traffic at *rates* (progress rates, alone-seconds per second)."""
    held = [0.0] * len(pieces)                     # W_j·(1 − m_j): panels j keeps while computing
    for j, p in enumerate(pieces):
        r = profiles.get(p.tenant)
        if r is not None:
            held[j] = r.working_set * (1.0 - p.membound)
    total_held = sum(held)
    fills = [rate * p.membound * bandwidth for p, rate in zip(pieces, rates, strict=True)]   # bytes/s
    total_fill = sum(fills)
    out = []
    for i, p in enumerate(pieces):
        r = profiles.get(p.tenant)
        if r is None or p.membound >= 1.0:
            out.append(0.0)
            continue
        others = (total_held - held[i]) + (total_fill - fills[i]) * r.interval
        kept = max(0.0, capacity - others)
        w = r.working_set
        lost = max(0.0, 1.0 - kept / w) - max(0.0, 1.0 - capacity / w)
        out.append((1.0 - p.membound) * r.traffic * max(0.0, lost))
    return out

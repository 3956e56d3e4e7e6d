"""The cost model's constants: fitted per GPU generation, carried to other links by physics.

Link classes: ``nvlink`` (NVSwitch or bridge), ``pcie`` (PCIe slots, switch
uplinks, the CPU interconnect), ``net`` (NICs and leaf uplinks). For each
class and protocol (LL, LL128, Simple) a :class:`ProtocolParams` gives the
launch latency, the latency per algorithm step and the fraction of the link
bandwidth the protocol achieves.

What varies with the GPU generation (NVLink and NVLS constants, the smallest
group NCCL runs NVLS on) is a :class:`Generation`, picked by the topology's
NVLink rate (:func:`generation`): Ampere is the A100 fit, Hopper is fitted on
public Hopper tables, Blackwell is carried from Hopper by NCCL's own tuner
ratios. Every constant is a *fraction of the link rate* or a *latency*, so a
GPU gets ``eff × its own NVLink rate`` and ``γ = 2 / its own HBM bandwidth``.
``benchmarks/fidelity_collectives.py`` (A100, published bus bandwidths) and
``benchmarks/fidelity_collectives_hopper.py`` (Hopper, Blackwell) print the
figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim_collectives.calibration import ProtocolParams

# -- NVLink: fitted ------------------------------------------------------------------------
# labsim_collectives.calibration.fit_nccl on ../shared/data/calibration/a100_sxm/
# nccl_a100_sxm.csv (nccl-tests 2.27.3, all_reduce / all_gather / reduce_scatter / alltoall on
# 2, 4, 8 A100-SXM4-80GB of one NVSwitch node, 504 rows), link 300 GB/s, γ = 2 / 2039 GB/s.
# Rerun: python benchmarks/fidelity_collectives.py --fit
NVLINK = {
    "LL": ProtocolParams(base=9.75e-6, alpha=0.785e-6, eff=0.0942),
    "LL128": ProtocolParams(base=13.96e-6, alpha=0.556e-6, eff=0.378),
    "Simple": ProtocolParams(base=34.7e-6, alpha=2.92e-6, eff=0.824),
}

# -- PCIe and network: carried over ---------------------------------------------------------
# Per-step latency: the fitted NVLink α scaled by NCCL's own ratio of hardware latencies,
# hwLat[PCI or NET][Ring][proto] / hwLat[NVLINK][Ring][proto] (NVIDIA/nccl src/graph/tuning.cc:
# NVLink 0.6/1.9/3.4 us, PCI 1.0/2.5/5.7 us, NET 2.7/4.0/14.0 us for LL/LL128/Simple).
# Bandwidth fraction of Simple: measured ring busbw over the raw per-direction rate —
# PCIe Gen4 24 / 31.5 = 0.76, Gen5 48 / 63 = 0.76; one 200 Gb RDMA NIC 24 / 25 = 0.96, 400 Gb
# 48 / 50 = 0.96 (GTC24 S62129, ../shared/data/collectives_reference.md §3). LL and LL128 keep
# their NVLink ratio to Simple (assumption: the protocols' payload overheads do not depend on
# the wire).
HW_LATENCY_RATIO = {
    "pcie": {"LL": 1.0 / 0.6, "LL128": 2.5 / 1.9, "Simple": 5.7 / 3.4},
    "net": {"LL": 2.7 / 0.6, "LL128": 4.0 / 1.9, "Simple": 14.0 / 3.4},
}
SIMPLE_EFF = {"pcie": 0.76, "net": 0.96}


def _carried(link_class: str) -> dict[str, ProtocolParams]:
    scale = SIMPLE_EFF[link_class] / NVLINK["Simple"].eff
    return {
        p: ProtocolParams(
            v.base, v.alpha * HW_LATENCY_RATIO[link_class][p], min(1.0, v.eff * scale)
        )
        for p, v in NVLINK.items()
    }


CLASS_PARAMS = {"nvlink": NVLINK, "pcie": _carried("pcie"), "net": _carried("net")}

# Which class each link kind of labsim_gpus.topology belongs to.
LINK_CLASS = {
    "nvlink": "nvlink",
    "pcie": "pcie",
    "pcie_uplink": "pcie",
    "cpu": "pcie",
    "host": "pcie",
    "nic": "net",
    "leaf_uplink": "net",
}

# -- Custom all-reduce kernels of serving frameworks (vLLM / SGLang / TRT-LLM), Ampere ------
# Each :class:`Generation` below carries its own (``custom_ar``); these are Ampere's. Fitted by
# relative least squares on the vLLM 0.14.0 CUDA-graph rows of ../shared/data/
# calibration/a100_sxm/custom_ar_a100_sxm.csv (2, 4, 8 GPUs): one-shot (each GPU reads every
# peer's whole buffer) on messages ≤ 256 KiB, two-shot (reduce-scatter + all-gather by direct
# peer reads) on 512 KiB – 4 MiB. Beyond CUSTOM_AR_MAX_BYTES the frameworks fall back to NCCL
# (vLLM CustomAllreduce max_size = 8192 * 1024).
ONE_SHOT = ProtocolParams(base=5.27e-6, alpha=0.0, eff=0.537)
TWO_SHOT = ProtocolParams(base=6.73e-6, alpha=0.0, eff=0.715)
CUSTOM_AR_MAX_BYTES = 8 * 1024 * 1024

# -- What changes with the GPU generation ---------------------------------------------------
# NCCL's own tuner (NVIDIA/nccl src/graph/tuning.cc, 2.30.7) keys its bandwidth caps on the
# GPU architecture while its latencies (baseLat, hwLat) are the same for every generation:
#   LL ring busbw cap llMaxBws (one node):      Ampere 87.7, Hopper 141, Blackwell 282 GB/s
#   LL128 per-channel cap perChMaxRingLL128Bws: Ampere 20,  Hopper 36.7, Blackwell 40 GB/s
#   NVLS efficiency nvlsEfficiency:             Ampere -,   Hopper 0.85, Blackwell 0.74
# A :class:`Generation` carries, per NVLink generation, the NVLink protocol constants and the
# NVLink SHARP (NVLS) constants, and the serving frameworks' custom all-reduce constants.
# Ampere (NVLink3) is the A100 fit above, unchanged. Hopper
# (NVLink4) is fitted on public Hopper nccl-tests tables (benchmarks/data/hopper_nccl/, see its
# README for what is fitted and what is held out); Blackwell (NVLink5) is carried from Hopper
# by NCCL's ratios above (no Blackwell table was used to fit it).


@dataclass(frozen=True)
class Generation:
    """NCCL's constants on one NVLink generation.

    ``nvlink``: LL / LL128 / Simple :class:`ProtocolParams` on NVLink (``eff`` is a fraction of
    the generation's per-GPU NVLink rate). ``nvls``: the in-switch reduction (NVLink SHARP),
    None where the NVSwitch has none. ``nvls_min_gpus``: the smallest group of one node NCCL
    runs NVLS on (multicast does not pay below it). ``custom_ar``: the serving frameworks'
    own ``one_shot`` and ``two_shot`` kernels (``base``: launch plus barriers of one call,
    ``eff``: fraction of the NVLink rate the peer reads reach).
    """

    name: str
    nvlink: dict[str, ProtocolParams]
    nvls: ProtocolParams | None
    nvls_min_gpus: int
    source: str
    custom_ar: dict[str, ProtocolParams]


def _shift(params: ProtocolParams, launch_saving: float, eff: float | None = None) -> ProtocolParams:
    """*params* with its launch latency lowered by *launch_saving* s (and a new ``eff``)."""
    return ProtocolParams(params.base - launch_saving, params.alpha, params.eff if eff is None else eff)


AMPERE = Generation(
    "ampere",
    NVLINK,
    None,
    0,
    "fit_nccl on nccl_a100_sxm.csv (A100-SXM4-80GB, NCCL 2.27.3); no NVLS on 2nd-gen NVSwitch",
    {"one_shot": ONE_SHOT, "two_shot": TWO_SHOT},
)

# Hopper, fitted block by block (python benchmarks/fidelity_collectives_hopper.py --fit):
# - LL and LL128 launch latency: 4.4 us less than the A100 fit (the launch path does not
#   depend on the protocol), fitted on the small-message part (32 KiB - 1 MiB) of the 8x H200
#   nccl-tests all_reduce sweep (NCCL 2.30.7). Their per-step alpha stays the A100 fit: NCCL
#   charges the same 0.6 us NVLink hop on every generation. With it, LL on 4 GPUs costs
#   5.35 + 6 x 0.785 = 10.1 us, NCCL's own ring/LL estimate 6.6 + 6 x 0.6 = 10.2 us.
# - Simple latency: NCCL's own tuner constants, not fitted: baseLat[Ring][Simple] 8.4 us and
#   hwLat[NVLink][Ring][Simple] 3.4 us per step (NVIDIA/nccl src/graph/tuning.cc, 2.30.7).
#   The A100 fit's Simple launch (34.7 us, less the 4.4 us above) priced a 4-GPU ring 48 us
#   of latency where NCCL's tuner says 8.4 + 6 x 3.4 = 28.8 us; the held-out 4x H100
#   nccl-tests sweeps (NCCL 2.29.2 and 2.26.2, benchmarks/data/hopper_nccl/), less labsim's
#   own Simple transfer time, leave 25 - 32 us at 4 - 32 MiB, and labsim was 10 - 25 % slow
#   at 8 - 32 MiB. On 8 GPUs NCCL takes NVLS from 2 MiB, so no 8-GPU table had priced the
#   mid-size Simple ring.
# - LL and LL128 eff: the A100 fit times NCCL's Hopper/Ampere caps (LL 141 / 87.7 busbw, LL128
#   36.7 / 20 per channel) at the link ratio 300 / 450 — not fitted.
# - Simple eff 0.90, fitted on the ring-only 16 GiB all_reduce / all_gather / reduce_scatter of
#   8x H200 (367.2 / 361.4 / 362.9 GB/s busbw, NCCL_NVLS_ENABLE=0): with the local copy γ·S
#   this is the measured ~0.82 of the link.
# - NVLS: latency 30 us, eff 0.72 and pipeline fill 12 MB, fitted on the NVLS-forced 8x H100
#   all_reduce sweep (Azure ND H100 v5, NCCL 2.18.5, 1 KiB - 8 GiB). Mid-size messages (2 - 64
#   MiB) run below the asymptotic rate until the NVLS pipeline is full (the measured excess
#   over the asymptote grows from ~30 to ~75 us, then stays), which a latency alone cannot
#   give. NCCL picks NVLS from 5 GPUs of a node up (8x H200 GPU-count sweep; "partitions of
#   four GPUs or fewer do not benefit from multicast", GB200 NVL partition guide).
HOPPER_LAUNCH_SAVING = 4.4e-6
NCCL_RING_SIMPLE_BASE_LAT = 8.4e-6  # tuning.cc baseLat[Ring][Simple]
NCCL_NVLINK_SIMPLE_HW_LAT = 3.4e-6  # tuning.cc hwLat[NVLink][Ring][Simple], per step
# - Custom all-reduce of the serving frameworks (one-shot / two-shot, CUDA-graph mode): base
#   and eff fitted by relative least squares on vLLM PR #24111's H100 tables, TP=4 and TP=6,
#   0.5 - 4 MiB, bf16, the kernel forced one-shot (ca_1stage) or two-shot (ca_2stage)
#   (benchmarks/data/hopper_custom_allreduce/; rerun: python
#   benchmarks/fidelity_collectives_hopper.py --fit-custom-ar); link 450 GB/s, γ = 2 / 3350
#   GB/s. Held out: PR #24532's TP=4 table and PR #24111's TP=2 one-shot value. One-shot
#   costs about what it costs on Ampere (5.4 vs 5.3 us per call) and its peer reads reach
#   more of the link (0.82 vs 0.54); two-shot's fixed cost is almost twice Ampere's (12.2 vs
#   6.7 us; it has a second, release/acquire barrier between its reduce-scatter and
#   all-gather, vLLM csrc/custom_all_reduce.cuh) and it reaches 0.62 of the link. The fitted
#   fraction depends on the TP size (alone, TP=4 gives one-shot 0.94 / two-shot 0.50, TP=6
#   0.74 / 0.69): with one value per generation TP=4 and TP=6 are each off by up to ~15 % at
#   4 MiB.
HOPPER_ONE_SHOT = ProtocolParams(base=5.42e-6, alpha=0.0, eff=0.817)
HOPPER_TWO_SHOT = ProtocolParams(base=12.17e-6, alpha=0.0, eff=0.624)
HOPPER = Generation(
    "hopper",
    {
        "LL": _shift(NVLINK["LL"], HOPPER_LAUNCH_SAVING, NVLINK["LL"].eff * 141 / 87.7 * 300 / 450),
        "LL128": _shift(NVLINK["LL128"], HOPPER_LAUNCH_SAVING, NVLINK["LL128"].eff * 36.7 / 20 * 300 / 450),
        "Simple": ProtocolParams(base=NCCL_RING_SIMPLE_BASE_LAT, alpha=NCCL_NVLINK_SIMPLE_HW_LAT, eff=0.90),
    },
    ProtocolParams(base=30.0e-6, alpha=0.0, eff=0.72, fill=12e6),
    5,
    "8x H200 nccl-tests (NCCL 2.30.7, 2.27.7), 8x H100 NVLS sweep (NCCL 2.18.5); Simple "
    "latency from NCCL's tuner",
    {"one_shot": HOPPER_ONE_SHOT, "two_shot": HOPPER_TWO_SHOT},
)

# Blackwell, carried from Hopper (its custom all-reduce constants too: no Blackwell table was
# used): LL eff by NCCL's LL cap ratio (282 vs 141 GB/s at twice the
# link rate: the same fraction), LL128 by the per-channel ratio 40 / 36.7 at twice the link
# rate, NVLS eff by nvlsEfficiency 0.74 / 0.85; NVLS from 6 GPUs (8x B200 GPU-count sweep).
# Simple keeps Hopper's tuner latencies (NCCL's baseLat / hwLat do not depend on the GPU).
BLACKWELL = Generation(
    "blackwell",
    {
        "LL": HOPPER.nvlink["LL"],
        "LL128": ProtocolParams(
            HOPPER.nvlink["LL128"].base,
            HOPPER.nvlink["LL128"].alpha,
            HOPPER.nvlink["LL128"].eff * 40 / 36.7 / 2,
        ),
        "Simple": HOPPER.nvlink["Simple"],
    },
    ProtocolParams(HOPPER.nvls.base, HOPPER.nvls.alpha, HOPPER.nvls.eff * 0.74 / 0.85, HOPPER.nvls.fill),
    6,
    "carried from Hopper by NCCL's tuner ratios; not fitted",
    HOPPER.custom_ar,
)

#: NVLink generation (labsim_gpus.topology_links.NVLINK_SPEEDS) -> its :class:`Generation`
GENERATIONS = {"nvlink2": AMPERE, "nvlink3": AMPERE, "nvlink4": HOPPER, "nvlink5": BLACKWELL}


def generation(topology) -> Generation:
    """The :class:`Generation` of *topology*'s NVLink (Ampere where it has none)."""
    from labsim_gpus.topology_links import nvlink_generation

    rate = float(getattr(topology, "nvlink_per_gpu", 0.0) or 0.0)
    if rate <= 0:
        return AMPERE
    return GENERATIONS[nvlink_generation(rate)]

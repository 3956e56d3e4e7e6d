"""The cost model's constants: fitted on A100 NVLink, carried to other links by physics.

Link classes: ``nvlink`` (NVSwitch or bridge), ``pcie`` (PCIe slots, switch
uplinks, the CPU interconnect), ``net`` (NICs and leaf uplinks). For each
class and protocol (LL, LL128, Simple) a :class:`ProtocolParams` gives the
launch latency, the latency per algorithm step and the fraction of the link
bandwidth the protocol achieves.

How the A100 fit transfers to other GPUs: the fitted numbers are *fractions
of the link rate* and *latencies*, not bandwidths, so an H100/H200/B200 node
gets ``eff × its own NVLink rate`` (450 / 450 / 900 GB/s per direction) and
``γ = 2 / its own HBM bandwidth``. ``benchmarks/fidelity_collectives.py``
prints the resulting bus bandwidths against the published ones.
"""

from __future__ import annotations

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

# -- NVLink SHARP (NVLS, in-switch reduction) -----------------------------------------------
# Only the Simple protocol. Latency: NCCL's NVLS hardware latency on NVLink, 25 us
# (tuning.cc hwLat[NVLINK][NVLS][Simple]); there is no A100 data (no NVLS), so the bandwidth
# fraction is anchored on one published number: 8× H100 NVLS all-reduce busbw 480 GB/s
# (GTC24 S62129; collectives_reference.md §3) with each GPU sending and receiving S once:
# 480 = 1.75 · S / (S / (450e9 · eff) + 2 · S / 3.35e12) → eff = 0.729. H200 (473) and B200
# (838) are then predictions (printed by the fidelity benchmark).
NVLS = ProtocolParams(base=NVLINK["Simple"].base, alpha=25e-6, eff=0.729)

# -- Custom all-reduce kernels of serving frameworks (vLLM / SGLang / TRT-LLM) --------------
# Fitted by relative least squares on the vLLM 0.14.0 CUDA-graph rows of ../shared/data/
# calibration/a100_sxm/custom_ar_a100_sxm.csv (2, 4, 8 GPUs): one-shot (each GPU reads every
# peer's whole buffer) on messages ≤ 256 KiB, two-shot (reduce-scatter + all-gather by direct
# peer reads) on 512 KiB – 4 MiB. Beyond CUSTOM_AR_MAX_BYTES the frameworks fall back to NCCL
# (vLLM CustomAllreduce max_size = 8192 * 1024).
ONE_SHOT = ProtocolParams(base=5.27e-6, alpha=0.0, eff=0.537)
TWO_SHOT = ProtocolParams(base=6.73e-6, alpha=0.0, eff=0.715)
CUSTOM_AR_MAX_BYTES = 8 * 1024 * 1024

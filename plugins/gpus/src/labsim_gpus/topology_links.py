"""Link technologies: the bandwidth and latency of each kind of wire, with sources.

Every bandwidth is **bytes per second per direction** (the unit nccl-tests'
bus bandwidth is compared with); every latency is seconds per hop. A
:class:`Link` is one physical connection (a GPU's NVLink ports, a PCIe x16
slot, a switch uplink, a NIC port); the topology names links and the
collectives plugin adds up the bytes each link carries in each direction.

>>> from labsim_gpus.topology_links import NIC_SPEEDS
>>> NIC_SPEEDS["ndr"].bandwidth / 1e9      # 400 Gb/s InfiniBand NDR = 50 GB/s
50.0
"""

from __future__ import annotations

from dataclasses import dataclass

GBPS = 1e9  # bytes/s
GBIT = 1e9 / 8  # bytes/s of one Gb/s


@dataclass(frozen=True)
class Link:
    """One physical link: ``name`` (unique in its topology), ``kind``, per-direction
    ``bandwidth`` (bytes/s), one-hop ``latency`` (s).

    ``kind`` is one of ``nvlink`` (a GPU's NVLink ports to the NVSwitch or a
    bridge), ``pcie`` (a GPU's or NIC's PCIe slot), ``pcie_uplink`` (a PCIe
    switch's x16 uplink to the CPU root complex), ``cpu`` (the socket-to-socket
    interconnect), ``host`` (host memory), ``nic`` (a GPU's network port),
    ``leaf_uplink`` (a leaf switch's aggregate uplink to the spines).
    """

    name: str
    kind: str
    bandwidth: float
    latency: float

    def __post_init__(self):
        if self.bandwidth <= 0:
            raise ValueError(f"link {self.name}: bandwidth must be > 0")


@dataclass(frozen=True)
class LinkSpeed:
    """A technology's per-direction bandwidth and one-hop latency."""

    bandwidth: float
    latency: float
    source: str


# -- NVLink, per GPU and per direction (all links of one GPU together) ----------------------
# nccl-tests compares busbw with these unidirectional per-GPU rates: NVLink2 150, NVLink3 300,
# NVLink4 450, NVLink5 900 GB/s (../shared/data/collectives_reference.md §1; datasheets give
# the bidirectional 300/600/900/1800 GB/s, ../shared/data/gpu_datasheets.csv).
# Latency: NCCL's tuning model charges 0.6 us per ring step on NVLink with the LL protocol
# (NVIDIA/nccl src/graph/tuning.cc, hwLat[NVLINK][Ring][LL]); that per-step figure includes
# the NVSwitch hop, so it is the hop latency here.
NVLINK_SPEEDS = {
    "nvlink2": LinkSpeed(150 * GBPS, 0.6e-6, "V100 datasheet: 300 GB/s bidirectional"),
    "nvlink3": LinkSpeed(300 * GBPS, 0.6e-6, "A100 datasheet: 600 GB/s bidirectional, 12 links"),
    "nvlink4": LinkSpeed(450 * GBPS, 0.6e-6, "H100 datasheet: 900 GB/s bidirectional, 18 links"),
    "nvlink5": LinkSpeed(900 * GBPS, 0.6e-6, "HGX B200 datasheet: 1.8 TB/s bidirectional per GPU"),
}

# -- PCIe x16, per direction --------------------------------------------------------------
# Raw signalling: Gen3 8 GT/s, Gen4 16 GT/s, Gen5 32 GT/s per lane, 128b/130b coding
# (PCI-SIG base specifications 3.0/4.0/5.0): x16 = 15.75 / 31.5 / 63 GB/s per direction.
# Datasheets round to 32/64/128 GB/s bidirectional (gpu_datasheets.csv host_link column).
# Latency: NCCL charges 1.0 us per LL ring step over PCIe (tuning.cc hwLat[PCI][Ring][LL]).
PCIE_SPEEDS = {
    "gen3": LinkSpeed(15.75 * GBPS, 1.0e-6, "PCIe 3.0: 8 GT/s x16, 128b/130b"),
    "gen4": LinkSpeed(31.5 * GBPS, 1.0e-6, "PCIe 4.0: 16 GT/s x16, 128b/130b"),
    "gen5": LinkSpeed(63.0 * GBPS, 1.0e-6, "PCIe 5.0: 32 GT/s x16, 128b/130b"),
}

# Socket-to-socket links between the two CPUs of a server. Assumption (no single datasheet
# covers every board): 3 UPI 2.0 links at 16 GT/s ≈ 3 × 32 GB/s bidirectional on Sapphire
# Rapids (Intel 4th-gen Xeon product brief) → 48 GB/s per direction, 0.5 us extra hop.
CPU_INTERCONNECT = LinkSpeed(48 * GBPS, 0.5e-6, "assumption: 3× UPI 2.0 at 16 GT/s")

# -- NICs, per port and per direction -------------------------------------------------------
# InfiniBand HDR 200 Gb/s, NDR 400 Gb/s, XDR 800 Gb/s (InfiniBand Trade Association roadmap;
# ConnectX-6 / ConnectX-7 / ConnectX-8 datasheets); RoCE at the Ethernet line rate.
# Latency: NCCL charges 2.7 us per LL ring step over the network (tuning.cc
# hwLat[NET][Ring][LL]), which covers NIC + one switch hop; the switch hop alone is about
# 0.13 us on Quantum-2 NDR switches (assumption: NVIDIA QM9700 product brief quotes
# sub-130 ns port-to-port) and is added per extra switch crossed.
NIC_SPEEDS = {
    "hdr": LinkSpeed(200 * GBIT, 2.7e-6, "InfiniBand HDR 200 Gb/s (ConnectX-6)"),
    "ndr": LinkSpeed(400 * GBIT, 2.7e-6, "InfiniBand NDR 400 Gb/s (ConnectX-7)"),
    "xdr": LinkSpeed(800 * GBIT, 2.7e-6, "InfiniBand XDR 800 Gb/s (ConnectX-8)"),
    "roce100": LinkSpeed(100 * GBIT, 3.5e-6, "RoCE v2 100 GbE; +0.8 us over IB is an assumption"),
    "roce200": LinkSpeed(200 * GBIT, 3.5e-6, "RoCE v2 200 GbE; latency as roce100"),
    "roce400": LinkSpeed(400 * GBIT, 3.5e-6, "RoCE v2 400 GbE; latency as roce100"),
}
SWITCH_HOP_LATENCY = 0.13e-6  # assumption, see the NIC comment above

# Aliases users may write in an experiment file.
NIC_ALIASES = {
    "ib-hdr": "hdr",
    "infiniband-hdr": "hdr",
    "ib-ndr": "ndr",
    "infiniband-ndr": "ndr",
    "ib-xdr": "xdr",
    "roce": "roce400",
    "roce-100": "roce100",
    "roce-200": "roce200",
    "roce-400": "roce400",
}


def nic_speed(kind: str) -> LinkSpeed:
    """The :class:`LinkSpeed` of a NIC kind (``hdr``, ``ndr``, ``xdr``, ``roce100/200/400``)."""
    key = str(kind).lower()
    key = NIC_ALIASES.get(key, key)
    return NIC_SPEEDS[key]


def nvlink_generation(per_gpu_bw: float) -> str:
    """The NVLink generation whose per-GPU, per-direction rate is closest to *per_gpu_bw*."""
    return min(NVLINK_SPEEDS, key=lambda g: abs(NVLINK_SPEEDS[g].bandwidth - per_gpu_bw))

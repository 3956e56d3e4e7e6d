"""Interconnect topologies: boxes of GPUs and clusters of boxes, as a graph of links.

A :class:`ClusterTopology` is ``nodes`` identical servers of ``gpus_per_node``
GPUs. Inside a server the GPUs talk over an NVSwitch (``intra: nvswitch``),
NVLink bridges between pairs (``nvlink-pairs``) or PCIe only (``pcie``, with
optional PCIe switches and two CPU sockets). Across servers each GPU reaches
the network through a NIC (InfiniBand HDR/NDR/XDR or RoCE), wired either
rail-optimised (NIC *k* of every server in a scalable unit on leaf switch *k*)
or as a spine-leaf fat-tree of whole servers, with an oversubscription ratio
on the leaf uplinks.

The collectives plugin asks three things of a topology:

* :meth:`ClusterTopology.path` — the links (and directions) a transfer from
  one rank to another crosses, to add up per-link bytes and find the
  bottleneck;
* :meth:`ClusterTopology.link` — each link's bandwidth and latency;
* :meth:`ClusterTopology.links_crossed` — the links a group of ranks uses,
  so collectives of different groups that share links share bandwidth.

Presets: ``dgx-a100``, ``dgx-h100``, ``hgx-h200``, ``hgx-b200``, ``pcie-l40s``,
and ``custom`` (everything written out in the experiment file)::

    >>> import labsim
    >>> topo = labsim.topology("dgx-h100").customize(
    ...     {"nodes": 4, "nic": "ndr", "fabric": "fat-tree", "oversubscription": 2})  # doctest: +SKIP
    >>> topo.world_size                                                              # doctest: +SKIP
    32
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import labsim
from labsim import hookimpl
from labsim.errors import UsageError

from labsim_gpus.topology_links import (
    CPU_INTERCONNECT,
    GBPS,
    NIC_ALIASES,
    NIC_SPEEDS,
    NVLINK_SPEEDS,
    PCIE_SPEEDS,
    SWITCH_HOP_LATENCY,
    Link,
    nic_speed,
    nvlink_generation,
)

INTRA_KINDS = ("nvswitch", "nvlink-pairs", "pcie")
FABRICS = ("rail", "fat-tree")

# Host memory seen from one server. Assumption: 8 channels of DDR5-4800 per socket
# = 8 × 38.4 GB/s ≈ 307 GB/s per socket (JEDEC DDR5-4800 × 64-bit channel); two sockets.
HOST_MEMORY_BW_PER_SOCKET = 307 * GBPS
HOST_MEMORY_LATENCY = 0.1e-6  # assumption: DRAM access ~100 ns

CONFIG_SCHEMA: dict = {
    "type": "object",
    "description": "An interconnect topology: a preset (`type: dgx-h100`) adjusted by these "
    "fields, or `type: custom` with device and gpus_per_node written out.",
    "properties": {
        "type": {"type": "string"},
        "name": {"type": "string", "description": "a label for results"},
        "device": {"type": "string", "description": "GPU of every node (`labsim list devices`)"},
        "gpus_per_node": {"type": "integer", "minimum": 1, "maximum": 72},
        "nodes": {"type": "integer", "minimum": 1, "description": "servers in the cluster: how many GPUs "
                  "there are to allocate (asking for more is refused); a collective's time depends on "
                  "where its ranks sit, not on idle servers"},
        "intra": {
            "enum": list(INTRA_KINDS),
            "description": "inside a node: NVSwitch, NVLink bridge pairs, or PCIe only",
        },
        "nvlink_bw_GBps": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "NVLink GB/s per GPU per direction (default: the device's)",
        },
        "nvls": {"type": "boolean", "description": "NVSwitch in-switch reduction (NVLink SHARP)"},
        "ib_sharp": {
            "type": "boolean",
            "description": "network switches reduce in-network (InfiniBand SHARP, NCCL CollNet)",
        },
        "pcie": {"enum": list(PCIE_SPEEDS), "description": "PCIe generation of the GPU slots"},
        "pcie_switch_gpus": {
            "type": "integer",
            "minimum": 0,
            "description": "GPUs behind each PCIe switch (0: GPUs on the CPU root)",
        },
        "sockets": {"type": "integer", "minimum": 1, "maximum": 8},
        "nic": {
            "enum": sorted(set(NIC_SPEEDS) | set(NIC_ALIASES)),
            "description": "network port per NIC: InfiniBand hdr/ndr/xdr or RoCE",
        },
        "nics_per_node": {"type": "integer", "minimum": 1},
        "fabric": {
            "enum": list(FABRICS),
            "description": "rail-optimised leaves, or a spine-leaf fat-tree of whole nodes",
        },
        "nodes_per_leaf": {
            "type": "integer",
            "minimum": 1,
            "description": "servers under one leaf (or per rail scalable unit)",
        },
        "oversubscription": {
            "type": "number",
            "minimum": 1,
            "description": "leaf downlink : uplink bandwidth ratio (1 = non-blocking)",
        },
        "degraded_links": {
            "type": "object",
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "description": "links running below their rated bandwidth, by name (`n3.nic0`: node 3's "
            "first NIC; `n0.g5.nvl`: GPU 5's NVLink ports; `n1.g2.pcie`; `n0.host`): the fraction "
            "of the bandwidth each still gives (a flapping or mis-negotiated port, a straggling "
            "node). Collectives and transfers over it slow down, and so does everything that "
            "waits for them.",
        },
    },
    "additionalProperties": False,
}

_FIELDS = {p for p in CONFIG_SCHEMA["properties"] if p != "type"}


@dataclass(eq=False)
class ClusterTopology(labsim.Topology):
    """``nodes`` servers of ``gpus_per_node`` GPUs, their links and the network between them."""

    name: str
    description: str = ""
    device_name: str | None = None
    gpus_per_node: int = 8
    nodes: int = 1
    intra: str = "nvswitch"
    nvlink_bw: float | None = None  # bytes/s per GPU per direction; None: the device's
    nvls: bool = False
    ib_sharp: bool = False  # InfiniBand SHARP in the leaf/spine switches (NCCL CollNet)
    pcie: str = "gen4"
    pcie_switch_gpus: int = 0
    sockets: int = 2
    nic: str = "ndr"
    nics_per_node: int = 8
    fabric: str = "rail"
    nodes_per_leaf: int = 32
    oversubscription: float = 1.0
    degraded_links: tuple[tuple[str, float], ...] = ()  # (link name, fraction of its bandwidth)
    aliases: tuple[str, ...] = ()
    _device: Any = field(default=None, repr=False)

    config_schema = CONFIG_SCHEMA

    # -- identity --------------------------------------------------------------------------

    @property
    def device(self):
        """The GPU of every node (looked up by name through the registry on first use)."""
        if self._device is None:
            if not self.device_name:
                raise UsageError(
                    f"topology {self.name!r} names no device: set `device:` "
                    "(see `labsim list devices`)"
                )
            self._device = labsim.device(self.device_name)
        return self._device

    @property
    def world_size(self) -> int:
        """Total GPUs: ``nodes × gpus_per_node``."""
        return self.nodes * self.gpus_per_node

    def with_device(self, device) -> ClusterTopology:
        """A copy whose nodes hold *device* (a Device object) instead."""
        return dataclasses.replace(self, device_name=device.name, _device=device, aliases=())

    def customize(self, spec: dict) -> ClusterTopology:
        """A copy with the fields of *spec* (see ``config_schema``); bad values raise UsageError."""
        spec = {k: v for k, v in dict(spec or {}).items() if k != "type"}
        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            raise UsageError(
                f"topology {self.name!r}: unknown field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(_FIELDS))}"
            )
        changes: dict[str, Any] = {"aliases": ()}
        for key, value in spec.items():
            if key == "device":
                changes["device_name"], changes["_device"] = str(value), None
            elif key == "nvlink_bw_GBps":
                changes["nvlink_bw"] = _positive(key, value) * GBPS
            elif key == "nic":
                _check_choice(key, str(value).lower(), set(NIC_SPEEDS) | set(NIC_ALIASES))
                changes["nic"] = NIC_ALIASES.get(str(value).lower(), str(value).lower())
            elif key in ("intra", "fabric", "pcie"):
                allowed = {"intra": INTRA_KINDS, "fabric": FABRICS, "pcie": tuple(PCIE_SPEEDS)}[key]
                _check_choice(key, value, allowed)
                changes[key] = value
            elif key in ("gpus_per_node", "nodes", "nics_per_node", "nodes_per_leaf", "sockets"):
                changes[key] = _int_at_least(key, value, 1)
            elif key == "pcie_switch_gpus":
                changes[key] = _int_at_least(key, value, 0)
            elif key == "oversubscription":
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 1:
                    raise UsageError(
                        f"topology field 'oversubscription' must be a number ≥ 1, got {value!r}"
                    )
                changes[key] = float(value)
            elif key == "degraded_links":
                changes[key] = _degraded_links(value)
            elif key in ("nvls", "ib_sharp"):
                if not isinstance(value, bool):
                    raise UsageError(f"topology field {key!r} must be true or false, got {value!r}")
                changes[key] = value
            else:  # name
                changes[key] = str(value)
        topo = dataclasses.replace(self, **changes)
        topo.validate()
        return topo

    def validate(self) -> None:
        """Raise UsageError if the fields do not describe a buildable cluster."""
        if self.intra == "nvlink-pairs" and self.gpus_per_node % 2:
            raise UsageError("topology field 'gpus_per_node' must be even with intra: nvlink-pairs")
        if self.nvls and self.intra != "nvswitch":
            raise UsageError("topology field 'nvls' needs intra: nvswitch (in-switch reduction)")
        if self.nics_per_node > self.gpus_per_node:
            raise UsageError(
                f"topology field 'nics_per_node' ({self.nics_per_node}) must not exceed "
                f"gpus_per_node ({self.gpus_per_node})"
            )
        if self.pcie_switch_gpus and self.gpus_per_node % self.pcie_switch_gpus:
            raise UsageError("topology field 'pcie_switch_gpus' must divide gpus_per_node")
        if self.degraded_links:
            known = {link.name for link in self.links()}
            for name, _ in self.degraded_links:
                if name not in known:
                    nics = f"n0.nic0 … n{self.nodes - 1}.nic{self.nics_per_node - 1}, " if self.nodes > 1 else ""
                    raise UsageError(
                        f"topology field 'degraded_links': no link {name!r} in {self.nodes} node(s) of "
                        f"{self.gpus_per_node} GPUs; allowed names: {nics}n<node>.g<gpu>.nvl, "
                        "n<node>.g<gpu>.pcie, n<node>.host"
                    )

    # -- ranks ------------------------------------------------------------------------------

    def node_of(self, rank: int) -> int:
        """The server holding global *rank* (ranks fill node 0 first)."""
        return rank // self.gpus_per_node

    def check_ranks(self, ranks) -> list[int]:
        """*ranks* as a list of global ranks (an int n means ranks 0..n-1); UsageError if invalid."""
        if isinstance(ranks, int | float) and not isinstance(ranks, bool):
            if int(ranks) != ranks or ranks < 1:
                raise UsageError(f"ranks must be a positive integer, got {ranks!r}")
            ranks = list(range(int(ranks)))
        ranks = [int(r) for r in ranks]
        if not ranks:
            raise UsageError("ranks must name at least one GPU")
        if len(set(ranks)) != len(ranks):
            raise UsageError(f"ranks contain duplicates: {ranks}")
        bad = [r for r in ranks if r < 0 or r >= self.world_size]
        if bad:
            raise UsageError(
                f"ranks {bad} do not exist on topology {self.name!r} "
                f"({self.nodes} node(s) × {self.gpus_per_node} GPUs = "
                f"{self.world_size} ranks); set `nodes:` larger"
            )
        return ranks

    # -- links ------------------------------------------------------------------------------

    @property
    def nvlink_per_gpu(self) -> float:
        """NVLink bytes/s per GPU per direction (0 when the node has no NVLink)."""
        if self.intra == "pcie":
            return 0.0
        if self.nvlink_bw is not None:
            return self.nvlink_bw
        return float(getattr(self.device, "nvlink_bw", 0.0) or 0.0)

    def link(self, name: str) -> Link:
        """The :class:`Link` called *name* (names come from :meth:`path` and :meth:`links`)."""
        return _link(self, name)

    def links(self) -> list[Link]:
        """Every link of the cluster (NVLink ports, PCIe slots and uplinks, NICs, leaf uplinks)."""
        names = []
        for node in range(self.nodes):
            for g in range(self.gpus_per_node):
                names.append(f"n{node}.g{g}.pcie")
                if self.intra != "pcie":
                    names.append(f"n{node}.g{g}.nvl")
            for s in range(self._pcie_switches()):
                names.append(f"n{node}.sw{s}.up")
            if self.sockets > 1:
                names.append(f"n{node}.cpu")
            names.append(f"n{node}.host")
            if self.nodes > 1:
                names += [f"n{node}.nic{k}" for k in range(self.nics_per_node)]
        if self.nodes > 1:
            names += sorted({up for a in range(self.nodes) for up in self._uplinks(a)})
        return [self.link(n) for n in names]

    def link_class(self, src: int, dst: int) -> str:
        """``nvlink``, ``pcie`` or ``net``: the kind of path between two ranks."""
        if self.node_of(src) != self.node_of(dst):
            return "net"
        a, b = src % self.gpus_per_node, dst % self.gpus_per_node
        if self.intra == "nvswitch" or (self.intra == "nvlink-pairs" and a // 2 == b // 2):
            return "nvlink"
        return "pcie"

    def path(self, src: int, dst: int) -> list[tuple[str, int]]:
        """Links a transfer from rank *src* to rank *dst* crosses, as ``(link name, direction)``.

        Direction ``+1`` is away from the source GPU (out of a port, up a switch), ``-1``
        towards the destination. Each direction of a link has the link's full bandwidth.
        """
        if src == dst:
            return []
        na, nb = self.node_of(src), self.node_of(dst)
        a, b = src % self.gpus_per_node, dst % self.gpus_per_node
        kind = self.link_class(src, dst)
        if kind == "nvlink":
            return [(f"n{na}.g{a}.nvl", +1), (f"n{nb}.g{b}.nvl", -1)]
        if kind == "pcie":
            hops = [(f"n{na}.g{a}.pcie", +1)]
            sa, sb = self._switch_of(a), self._switch_of(b)
            if sa != sb:
                if sa is not None:
                    hops.append((f"n{na}.sw{sa}.up", +1))
                if self.sockets > 1 and self._socket_of(a) != self._socket_of(b):
                    hops.append(
                        (f"n{na}.cpu", +1 if self._socket_of(a) < self._socket_of(b) else -1)
                    )
                if sb is not None:
                    hops.append((f"n{nb}.sw{sb}.up", -1))
            return hops + [(f"n{nb}.g{b}.pcie", -1)]
        # inter-node traffic stays on the source GPU's rail: NCCL's PXN (NCCL >= 2.12) hands it
        # over NVLink to the destination-side GPU of the same rail
        ka = kb = self.nic_of(a)
        hops = [(f"n{na}.nic{ka}", +1)]
        ua, ub = self._leaf_uplink(na, ka), self._leaf_uplink(nb, kb)
        if ua != ub:
            hops += [(ua, +1), (ub, -1)]
        return hops + [(f"n{nb}.nic{kb}", -1)]

    def path_latency(self, src: int, dst: int) -> float:
        """One-way latency of a small message from *src* to *dst* (sum of hop latencies)."""
        hops = self.path(src, dst)
        if not hops:
            return 0.0
        first = self.link(hops[0][0])
        extra = sum(self.link(n).latency for n, _ in hops[1:-1])
        return first.latency + extra

    def host_path(self, rank: int) -> list[tuple[str, int]]:
        """Links a GPU → host-memory copy crosses (reverse the directions for host → GPU)."""
        node, g = self.node_of(rank), rank % self.gpus_per_node
        hops = [(f"n{node}.g{g}.pcie", +1)]
        sw = self._switch_of(g)
        if sw is not None:
            hops.append((f"n{node}.sw{sw}.up", +1))
        return hops + [(f"n{node}.host", +1)]

    def links_crossed(self, ranks) -> set[str]:
        """Names of the links a collective over *ranks* may use (the union of the paths of a
        ring through them in rank order, which covers the tree and two-level algorithms)."""
        ranks = sorted(self.check_ranks(ranks))
        names: set[str] = set()
        if len(ranks) == 1:
            return names
        for i, r in enumerate(ranks):
            names.update(n for n, _ in self.path(r, ranks[(i + 1) % len(ranks)]))
        return names

    def nic_of(self, local_gpu: int) -> int:
        """The NIC index a GPU (index inside its node) sends through (nearest, rail-aligned)."""
        return local_gpu * self.nics_per_node // self.gpus_per_node

    # -- internals ----------------------------------------------------------------------------

    def _pcie_switches(self) -> int:
        return self.gpus_per_node // self.pcie_switch_gpus if self.pcie_switch_gpus else 0

    def _switch_of(self, local_gpu: int) -> int | None:
        return local_gpu // self.pcie_switch_gpus if self.pcie_switch_gpus else None

    def _socket_of(self, local_gpu: int) -> int:
        return local_gpu * self.sockets // self.gpus_per_node

    def _leaf_uplink(self, node: int, nic: int) -> str:
        unit = node // self.nodes_per_leaf
        return f"su{unit}.rail{nic}.up" if self.fabric == "rail" else f"leaf{unit}.up"

    def _uplinks(self, node: int) -> set[str]:
        return {self._leaf_uplink(node, k) for k in range(self.nics_per_node)}

    def __repr__(self) -> str:
        return (
            f"ClusterTopology({self.name!r}, device={self.device_name!r}, "
            f"{self.nodes}×{self.gpus_per_node}, intra={self.intra}, nic={self.nic}, "
            f"fabric={self.fabric}, oversubscription={self.oversubscription})"
        )


@functools.lru_cache(maxsize=65536)
def _link(topo: ClusterTopology, name: str) -> Link:
    """Build the link *name* of *topo* from its naming scheme (cached), at the fraction of its
    bandwidth ``degraded_links`` leaves it."""
    link = _rated_link(topo, name)
    for slow, fraction in topo.degraded_links:
        if slow == name:
            return dataclasses.replace(link, bandwidth=link.bandwidth * fraction)
    return link


def _degraded_links(value) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict):
        raise UsageError("topology field 'degraded_links' must map link names to the fraction of "
                         f"bandwidth left (0 < f ≤ 1), got {value!r}")
    out = []
    for name, fraction in sorted(value.items()):
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            raise UsageError(f"topology field 'degraded_links.{name}' must be a fraction of the "
                             f"link's bandwidth, 0 < f ≤ 1; got {fraction!r}")
        out.append((str(name), float(fraction)))
    return tuple(out)


def _rated_link(topo: ClusterTopology, name: str) -> Link:
    """The link *name* of *topo* at its rated bandwidth."""
    parts = name.split(".")
    tail = parts[-1]
    try:
        if tail == "nvl":
            gen = NVLINK_SPEEDS[nvlink_generation(topo.nvlink_per_gpu or 1.0)]
            return Link(name, "nvlink", topo.nvlink_per_gpu, gen.latency)
        if tail == "pcie":
            speed = PCIE_SPEEDS[topo.pcie]
            host = (
                float(getattr(topo.device, "host_link_bw", 0.0) or 0.0) if topo.device_name else 0.0
            )
            bw = min(speed.bandwidth, host) if host > 0 else speed.bandwidth
            return Link(name, "pcie", bw, speed.latency)
        if tail == "up" and parts[0].startswith("n"):  # PCIe switch uplink (x16 of the same gen)
            speed = PCIE_SPEEDS[topo.pcie]
            return Link(name, "pcie_uplink", speed.bandwidth, speed.latency)
        if tail == "cpu":
            return Link(name, "cpu", CPU_INTERCONNECT.bandwidth, CPU_INTERCONNECT.latency)
        if tail == "host":
            return Link(name, "host", HOST_MEMORY_BW_PER_SOCKET * topo.sockets, HOST_MEMORY_LATENCY)
        if tail.startswith("nic"):
            speed = nic_speed(topo.nic)
            return Link(name, "nic", speed.bandwidth, speed.latency)
        if tail == "up":  # leaf uplink: the leaf's downlink capacity over the oversubscription
            speed = nic_speed(topo.nic)
            ports = (
                topo.nodes_per_leaf
                if topo.fabric == "rail"
                else (topo.nodes_per_leaf * topo.nics_per_node)
            )
            ports = min(ports, topo.nodes * (1 if topo.fabric == "rail" else topo.nics_per_node))
            # the leaf → spine → leaf crossing adds two switch hops
            return Link(
                name,
                "leaf_uplink",
                ports * speed.bandwidth / topo.oversubscription,
                SWITCH_HOP_LATENCY,
            )
    except KeyError:
        pass
    raise UsageError(f"topology {topo.name!r} has no link named {name!r}")


def _check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise UsageError(
            f"topology field {key!r} must be one of {', '.join(sorted(allowed))}; got {value!r}"
        )


def _int_at_least(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"topology field {key!r} must be an integer ≥ {low}, got {value!r}")
    return value


def _positive(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"topology field {key!r} must be a positive number, got {value!r}")
    return float(value)


# -- presets --------------------------------------------------------------------------------
# DGX A100: 8× A100-SXM4-80GB on six 2nd-gen NVSwitches (NVLink3, 600 GB/s bidirectional per
#   GPU), 8× ConnectX-6 200 Gb/s HDR compute NICs, 4 PCIe Gen4 switches of 2 GPUs + 2 NICs, two
#   AMD Rome sockets (NVIDIA DGX A100 System Architecture whitepaper WP-10083-001; DGX A100
#   datasheet). No NVLink SHARP (needs 3rd-gen NVSwitch).
# DGX H100: 8× H100-SXM on four 3rd-gen NVSwitches with NVLink SHARP (NVLS), 8× ConnectX-7
#   400 Gb/s NDR, PCIe Gen5 (NVIDIA DGX H100 datasheet; DGX SuperPOD H100 reference
#   architecture RA-11333-001: rail-optimised, 32-node scalable units, non-blocking).
# HGX H200: same baseboard and NVSwitch as HGX H100 (NVIDIA H200 datasheet), NDR NICs.
# HGX B200: 8× B200, NVLink5 (1.8 TB/s bidirectional per GPU) on two 4th-gen NVSwitch chips with
#   NVLS, 8× ConnectX-7 400 Gb/s (NVIDIA DGX B200 datasheet), PCIe Gen5.
# pcie-l40s: 8× L40S (no NVLink) on PCIe Gen4; two PCIe switches of 4 GPUs, one per CPU socket,
#   4× 200 GbE RoCE. Assumption: the common 4U dual-socket layout of L40S servers (e.g. the
#   Supermicro SYS-421GE-TNRT with switch board); NIC count varies by vendor.
PRESETS = (
    ClusterTopology(
        "dgx-a100",
        "NVIDIA DGX A100: 8× A100-SXM4-80GB on NVSwitch, 8× HDR 200 Gb/s",
        device_name="A100-SXM4-80GB",
        intra="nvswitch",
        nvls=False,
        pcie="gen4",
        pcie_switch_gpus=2,
        nic="hdr",
        nics_per_node=8,
        aliases=("dgxa100",),
    ),
    ClusterTopology(
        "dgx-h100",
        "NVIDIA DGX H100: 8× H100-SXM on NVSwitch with NVLS, 8× NDR 400 Gb/s",
        device_name="H100-SXM",
        intra="nvswitch",
        nvls=True,
        pcie="gen5",
        pcie_switch_gpus=2,
        nic="ndr",
        nics_per_node=8,
        aliases=("dgxh100", "hgx-h100"),
    ),
    ClusterTopology(
        "hgx-h200",
        "NVIDIA HGX H200: 8× H200-SXM on NVSwitch with NVLS, 8× NDR 400 Gb/s",
        device_name="H200-SXM",
        intra="nvswitch",
        nvls=True,
        pcie="gen5",
        pcie_switch_gpus=2,
        nic="ndr",
        nics_per_node=8,
        aliases=("dgx-h200",),
    ),
    ClusterTopology(
        "hgx-b200",
        "NVIDIA HGX B200: 8× B200 on NVLink5 NVSwitch with NVLS, 8× 400 Gb/s",
        device_name="B200",
        intra="nvswitch",
        nvls=True,
        pcie="gen5",
        pcie_switch_gpus=2,
        nic="ndr",
        nics_per_node=8,
        aliases=("dgx-b200",),
    ),
    ClusterTopology(
        "pcie-l40s",
        "8× L40S on PCIe Gen4 switches (no NVLink), 4× 200 GbE RoCE",
        device_name="L40S",
        intra="pcie",
        nvls=False,
        pcie="gen4",
        pcie_switch_gpus=4,
        nic="roce200",
        nics_per_node=4,
    ),
    ClusterTopology(
        "custom",
        "A topology written out in the experiment file (set device, "
        "gpus_per_node, intra, nic, fabric ...)",
        device_name=None,
    ),
)


def box_for_device(device, nodes: int = 1) -> ClusterTopology:
    """The usual server of *device*, inferred from its links (used when no topology is given).

    SXM parts with NVLink sit on an NVSwitch (with NVLS from NVLink4 on: third-gen NVSwitch);
    PCIe parts with NVLink get bridge pairs; parts without NVLink (L4, L40S, RTX-4090) are on
    PCIe Gen4 switches of four (the pcie-l40s layout). Eight GPUs per node, NDR NICs.
    """
    nvlink = float(getattr(device, "nvlink_bw", 0.0) or 0.0)
    name = str(getattr(device, "name", "GPU"))
    if nvlink <= 0:
        intra, nvls, switch = "pcie", False, 4
    elif "pcie" in name.lower():
        intra, nvls, switch = "nvlink-pairs", False, 2
    else:
        intra, nvls, switch = "nvswitch", nvlink >= NVLINK_SPEEDS["nvlink4"].bandwidth, 2
    gen = "gen5" if float(getattr(device, "host_link_bw", 0.0) or 0.0) > 40 * GBPS else "gen4"
    topo = ClusterTopology(
        f"{name}-box",
        f"one server of 8× {name} (inferred)",
        device_name=name,
        nodes=nodes,
        intra=intra,
        nvls=nvls,
        pcie=gen,
        pcie_switch_gpus=switch,
        nic="ndr",
        nics_per_node=8 if intra != "pcie" else 4,
    )
    topo._device = device
    return topo


@hookimpl
def register_topologies(register):
    for preset in PRESETS:
        register(preset)


__all__ = ["ClusterTopology", "Link", "PRESETS", "box_for_device", "register_topologies"]

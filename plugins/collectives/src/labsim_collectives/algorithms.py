"""Built-in collective algorithms: each turns a group and a size into a :class:`~.model.Plan`.

``nbytes`` S is always the nccl-tests "size": the buffer of each rank for
all-reduce, broadcast, reduce and send/recv; the *total* array for
reduce-scatter, all-gather and gather; each rank's whole send buffer for all-to-all.

To add an algorithm, subclass :class:`Algorithm` (``name``, ``collective``,
:meth:`Algorithm.plan`, optionally :meth:`Algorithm.unavailable`) and
register it, see :mod:`labsim_collectives.plugin`.
"""

from __future__ import annotations

import math

from labsim_collectives import params as P
from labsim_collectives.model import Group, Phase, Plan


class Algorithm:
    """One way to run a collective. ``nccl = True`` makes it a candidate of ``auto``."""

    name: str = ""
    collective: str = ""
    description: str = ""
    nccl: bool = True

    def unavailable(self, group: Group, nbytes: int) -> str | None:
        """None if the algorithm can run on *group*, else the reason it cannot."""
        return None

    def auto_skip(self, group: Group, nbytes: int) -> str | None:
        """None if NCCL's tuner considers the algorithm for *group*, else why ``auto`` skips it
        (it can still be asked for by name, as ``NCCL_ALGO`` forces it)."""
        return None

    def plan(self, group: Group, nbytes: int) -> Plan:
        """The phases of one call moving *nbytes* over *group*."""
        raise NotImplementedError(self)

    def time(self, nbytes, *, ranks=8, device=None, topology=None, algorithm=None) -> float:
        """Seconds of this algorithm (so a registered ``<collective>.<name>`` prices itself)."""
        from labsim.errors import UsageError

        from labsim_collectives.plugin import BY_NAME

        op = BY_NAME[self.collective]
        group = op.group(ranks, device, topology)
        if group.n == 1:
            return 0.0
        reason = self.unavailable(group, nbytes)
        if reason:
            raise UsageError(f"{self.name} cannot run here: {reason}")
        return op._best(group, nbytes, [self])[1].seconds


# -- helpers --------------------------------------------------------------------------------


def rotated_rings(group: Group) -> list[list[int]]:
    """One ring per rail, each leaving every node through a different GPU (and so NIC)."""
    if group.single_node:
        return [list(group.ranks)]
    rings = []
    for k in range(group.rails()):
        order = []
        for node in group.nodes:
            members = group.by_node[node]
            shift = (k * len(members)) // group.rails()
            order += members[shift:] + members[:shift]
        rings.append(order)
    return rings


def ring_phase(group: Group, steps: float, edge_fraction: float, nbytes: float) -> Phase:
    """A flat ring over the whole group: *steps* latency steps, each edge carries
    ``edge_fraction · nbytes`` (split over the rails when the ring spans nodes)."""
    phase = Phase()
    rings = rotated_rings(group)
    for order in rings:
        phase.add_ring(group.topology, order, edge_fraction * nbytes / len(rings))
    _ring_steps(phase, group, steps)
    return phase


def _ring_steps(phase: Phase, group: Group, steps: float) -> None:
    if group.single_node:
        phase.add_steps(group.intra_class(), steps)
    else:  # a step is as slow as its slowest hop: the network one
        phase.add_steps("net", steps)


def intra_phase(group: Group, steps_per_ring: float, edge_fraction: float, nbytes: float) -> Phase:
    """Every node runs its own ring over its members at the same time."""
    phase = Phase()
    for node in group.nodes:
        phase.add_ring(group.topology, group.by_node[node], edge_fraction * nbytes)
    phase.add_steps(group.intra_class(), steps_per_ring)
    return phase


def inter_phase(group: Group, steps: float, edge_fraction: float, nbytes: float) -> Phase:
    """The j-th GPU of every node forms a ring over the nodes (one ring per local position)."""
    phase = Phase()
    g = group.per_node
    for j in range(g):
        order = [group.by_node[node][j] for node in group.nodes]
        phase.add_ring(group.topology, order, edge_fraction * nbytes)
    phase.add_steps("net", steps)
    return phase


def _multi_node(group: Group) -> str | None:
    return "needs ranks on more than one node" if group.single_node else None


def _nvls(group: Group) -> str | None:
    topo = group.topology
    if not getattr(topo, "nvls", False):
        return f"topology {topo.name!r} has no NVLink SHARP (NVSwitch in-switch reduction)"
    if group.intra_class() != "nvlink":
        return "needs every GPU of a node on the NVSwitch"
    return None


# -- all-reduce -----------------------------------------------------------------------------


class RingAllReduce(Algorithm):
    """Ring all-reduce: reduce-scatter then all-gather around one ring per rail (2(n-1) steps)."""

    name, collective = "ring", "all_reduce"

    def plan(self, group, nbytes):
        n = group.n
        return Plan([ring_phase(group, 2 * (n - 1), 2 * (n - 1) / n, nbytes)], nbytes)


class TreeAllReduce(Algorithm):
    """NCCL double binary tree: a chain inside each node, two complementary binary trees
    across nodes each carrying half the data; reduce and broadcast pipelined."""

    name, collective = "tree", "all_reduce"

    def plan(self, group, nbytes):
        topo, phase = group.topology, Phase()
        for node in group.nodes:  # chain: S up (reduce) and S down (broadcast) on every edge
            chain = group.by_node[node]
            for a, b in zip(chain, chain[1:], strict=False):
                phase.add_transfer(topo, a, b, nbytes)
                phase.add_transfer(topo, b, a, nbytes)
        phase.add_steps(group.intra_class(), 2 * (group.per_node - 1))
        big = len(group.nodes)
        if big > 1:
            heads = [group.by_node[node][0] for node in group.nodes]
            rails = group.rails()
            for order in (heads, heads[::-1]):  # two complementary trees, S/2 each
                for child in range(1, big):
                    parent = (child - 1) // 2
                    for k in range(rails):
                        a = _on_rail(group, order[child], k)
                        b = _on_rail(group, order[parent], k)
                        share = nbytes / 2 / rails
                        phase.add_transfer(topo, a, b, share)
                        phase.add_transfer(topo, b, a, share)
            phase.add_steps("net", 2 * math.ceil(math.log2(big)))
        return Plan([phase], nbytes)


def _on_rail(group: Group, head: int, k: int) -> int:
    """The member of *head*'s node that uses the node's k-th NIC among the group's."""
    topo = group.topology
    members = group.by_node[topo.node_of(head)]
    return members[(k * len(members)) // group.rails()]


class TwoLevelAllReduce(Algorithm):
    """Hierarchical: reduce-scatter inside each node, all-reduce of S/g across nodes on every
    rail in parallel, all-gather inside each node."""

    name, collective = "two_level", "all_reduce"
    unavailable = staticmethod(lambda group, nbytes: _multi_node(group))

    def plan(self, group, nbytes):
        g, nn = group.per_node, len(group.nodes)
        shard = nbytes / g
        return Plan(
            [
                intra_phase(group, g - 1, (g - 1) / g, nbytes),
                inter_phase(group, 2 * (nn - 1), 2 * (nn - 1) / nn, shard),
                intra_phase(group, g - 1, (g - 1) / g, nbytes),
            ],
            nbytes,
        )


class RsAgAllReduce(Algorithm):
    """All-reduce as two launched collectives: ``reduce_scatter`` then ``all_gather`` (the
    FSDP/ZeRO pattern), each by ring; one launch latency more than ``ring``."""

    name, collective = "rs_ag", "all_reduce"

    def plan(self, group, nbytes):
        n = group.n
        rs = ring_phase(group, n - 1, (n - 1) / n, nbytes)
        ag = ring_phase(group, n - 1, (n - 1) / n, nbytes)
        return Plan([rs, ag], nbytes, launches=2)


def _nvls_protocol(group: Group):
    """The NVLS protocol of *group*'s NVLink generation (Hopper's where the generation has no
    NVLS of its own but the topology says its NVSwitch reduces)."""
    gen = P.generation(group.topology)
    return {
        "NVLS": {
            "nvlink": gen.nvls or P.HOPPER.nvls,
            "pcie": P.CLASS_PARAMS["pcie"]["Simple"],
            "net": P.CLASS_PARAMS["net"]["Simple"],
        }
    }


def _nvls_few_gpus(group: Group) -> str | None:
    need = P.generation(group.topology).nvls_min_gpus
    if group.per_node < need:
        return f"NCCL runs NVLS on {need} or more GPUs of a node on this generation"
    return None


class NvlsAllReduce(Algorithm):
    """NVLink SHARP: the NVSwitch reduces; each GPU sends S and receives S once (one node)."""

    name, collective = "nvls", "all_reduce"

    def unavailable(self, group, nbytes):
        if not group.single_node:
            return "one node only (use nvls_tree across nodes)"
        return _nvls(group)

    def plan(self, group, nbytes):
        phase = _nvls_phase(group, nbytes, nbytes, nbytes)
        return Plan([phase], nbytes, protocols=_nvls_protocol(group))

    auto_skip = staticmethod(lambda group, nbytes: _nvls_few_gpus(group))


def _nvls_phase(group: Group, nbytes: float, out_bytes: float, in_bytes: float) -> Phase:
    phase = Phase().add_steps("nvlink", 1)
    for r in group.ranks:
        node, local = group.topology.node_of(r), r % group.topology.gpus_per_node
        phase.loads[(f"n{node}.g{local}.nvl", +1)] += out_bytes
        phase.loads[(f"n{node}.g{local}.nvl", -1)] += in_bytes
    return phase


class NvlsTreeAllReduce(Algorithm):
    """NVLS inside each node (reduce-scatter and all-gather in the switch) plus rings of S/g
    across nodes on every rail — NCCL's NVLS + network path on multi-node NVSwitch systems.
    NCCL runs the three parts as one pipelined kernel, so they overlap: the busiest link sets
    the transfer time."""

    name, collective = "nvls_tree", "all_reduce"

    def unavailable(self, group, nbytes):
        return _multi_node(group) or _nvls(group)

    auto_skip = staticmethod(lambda group, nbytes: _nvls_few_gpus(group))

    def plan(self, group, nbytes):
        g, nn = group.per_node, len(group.nodes)
        shard = nbytes / g
        return Plan(
            [
                _nvls_phase(group, nbytes, nbytes, shard),
                inter_phase(group, 2 * (nn - 1), 2 * (nn - 1) / nn, shard),
                _nvls_phase(group, nbytes, shard, nbytes),
            ],
            nbytes,
            protocols=_nvls_protocol(group),
            overlap=True,
        )


class NvlsSharpAllReduce(Algorithm):
    """NVLS inside each node and InfiniBand SHARP across nodes (NCCL's NVLS algorithm with
    CollNet): each GPU's NIC sends its reduced S/g shard to the switches once and receives the
    result once, whatever the number of nodes; pipelined like ``nvls_tree``."""

    name, collective = "nvls_sharp", "all_reduce"

    def unavailable(self, group, nbytes):
        reason = _multi_node(group) or _nvls(group)
        if reason is None and not getattr(group.topology, "ib_sharp", False):
            reason = "the network has no InfiniBand SHARP (topology field ib_sharp)"
        return reason

    auto_skip = staticmethod(lambda group, nbytes: _nvls_few_gpus(group))

    def plan(self, group, nbytes):
        g = group.per_node
        shard = nbytes / g
        sharp = Phase().add_steps("net", 2)
        topo = group.topology
        for node in group.nodes:
            for r in group.by_node[node][:g]:
                nic = f"n{node}.nic{topo.nic_of(r % topo.gpus_per_node)}"
                sharp.loads[(nic, +1)] += shard
                sharp.loads[(nic, -1)] += shard
        return Plan(
            [
                _nvls_phase(group, nbytes, nbytes, shard),
                sharp,
                _nvls_phase(group, nbytes, shard, nbytes),
            ],
            nbytes,
            protocols=_nvls_protocol(group),
            overlap=True,
        )


def _custom_protocol(group: Group, kernel: str):
    """The ``custom`` protocol of *kernel* (``one_shot``/``two_shot``) on *group*'s NVLink
    generation (:attr:`labsim_collectives.params.Generation.custom_ar`)."""
    return {"custom": {"nvlink": P.generation(group.topology).custom_ar[kernel]}}


def _custom_ok(group: Group) -> str | None:
    if not group.single_node or group.intra_class() != "nvlink":
        return "needs all GPUs of one node connected by NVLink (the frameworks' P2P kernels)"
    return None


def vllm_kernel(n: int, nbytes: int) -> str:
    """The kernel vLLM's custom all-reduce runs for *nbytes* on *n* fully NVLink-connected GPUs:
    one-shot on 2 GPUs, or below 512 KiB on up to 4 and below 256 KiB on up to 8; two-shot
    otherwise (``REDUCE_CASE`` in vLLM ``csrc/custom_all_reduce.cuh``; docs/engine_behaviour.md
    §5). Later vLLM versions keep the rule and add ``VLLM_CUSTOM_ALLREDUCE_ALGO`` to force a
    kernel."""
    if n == 2 or (n <= 4 and nbytes < 512 * 1024) or (n <= 8 and nbytes < 256 * 1024):
        return "one_shot"
    return "two_shot"


class OneShotAllReduce(Algorithm):
    """Serving frameworks' one-shot custom all-reduce: every GPU reads all peers' buffers."""

    name, collective, nccl = "one_shot", "all_reduce", False
    unavailable = staticmethod(lambda group, nbytes: _custom_ok(group))

    def plan(self, group, nbytes):
        phase = Phase().add_steps("nvlink", 1)
        for a in group.ranks:
            for b in group.ranks:
                if a != b:
                    phase.add_transfer(group.topology, b, a, nbytes)
        return Plan([phase], nbytes, protocols=_custom_protocol(group, "one_shot"))


class TwoShotAllReduce(Algorithm):
    """Serving frameworks' two-shot custom all-reduce: reduce-scatter then all-gather by direct
    peer reads (each GPU moves 2(n-1)/n·S)."""

    name, collective, nccl = "two_shot", "all_reduce", False
    unavailable = staticmethod(lambda group, nbytes: _custom_ok(group))

    def plan(self, group, nbytes):
        n, phase = group.n, Phase().add_steps("nvlink", 2)
        for a in group.ranks:
            for b in group.ranks:
                if a != b:
                    phase.add_transfer(group.topology, b, a, 2 * nbytes / n)
        return Plan([phase], nbytes, protocols=_custom_protocol(group, "two_shot"))


#: the names of the serving frameworks' own all-reduce kernels: an engine that fuses work into
#: its own kernel (TensorRT-LLM's residual add + RMSNorm) asks whether the algorithm picked is
#: one of these
OWN_ALLREDUCE_KERNELS = (OneShotAllReduce.name, TwoShotAllReduce.name)


# -- reduce-scatter / all-gather ------------------------------------------------------------


class RingGatherScatter(Algorithm):
    """Ring reduce-scatter or all-gather: n-1 steps, (n-1)/n · S over each link."""

    name = "ring"

    def __init__(self, collective: str):
        self.collective = collective

    def plan(self, group, nbytes):
        n = group.n
        return Plan([ring_phase(group, n - 1, (n - 1) / n, nbytes)], nbytes)


class TwoLevelGatherScatter(Algorithm):
    """Two-level reduce-scatter (inside nodes, then across) or all-gather (across, then inside)."""

    name = "two_level"
    unavailable = staticmethod(lambda group, nbytes: _multi_node(group))

    def __init__(self, collective: str):
        self.collective = collective

    def plan(self, group, nbytes):
        g, nn = group.per_node, len(group.nodes)
        intra = intra_phase(group, g - 1, (g - 1) / g, nbytes)
        inter = inter_phase(group, nn - 1, (nn - 1) / nn, nbytes / g)
        phases = [intra, inter] if self.collective == "reduce_scatter" else [inter, intra]
        return Plan(phases, nbytes)


class NvlsGatherScatter(Algorithm):
    """NVLS reduce-scatter or all-gather on one node (NCCL 2.2x+): all-gather multicasts each
    GPU's shard S/n through the switch (each GPU sends S/n, receives (n-1)/n·S); reduce-scatter
    has the switch reduce each GPU's shard from its peers (sends (n-1)/n·S, receives S/n). One
    NVLS step; same link bytes as the ring, so it wins only where the ring's steps cost more."""

    name = "nvls"

    def __init__(self, collective: str):
        self.collective = collective

    def unavailable(self, group, nbytes):
        if not group.single_node:
            return "one node only"
        return _nvls(group)

    auto_skip = staticmethod(lambda group, nbytes: _nvls_few_gpus(group))

    def plan(self, group, nbytes):
        n = group.n
        share, rest = nbytes / n, (n - 1) / n * nbytes
        out, into = (share, rest) if self.collective == "all_gather" else (rest, share)
        return Plan([_nvls_phase(group, nbytes, out, into)], nbytes, protocols=_nvls_protocol(group))


# -- all-to-all, broadcast, reduce, gather, send/recv ---------------------------------------



def _direct_link_class(group) -> str:
    """The link class whose per-step latency a one-step direct exchange pays: NVLink inside an
    NVLink node, PCIe inside another node, the network across nodes."""
    if group.single_node:
        return "nvlink" if group.intra_class() == "nvlink" else "pcie"
    return "net"

class DirectAllToAll(Algorithm):
    """Pairwise all-to-all: every rank sends S/n to every other rank at once."""

    name, collective = "direct", "all_to_all"

    def plan(self, group, nbytes):
        n, phase = group.n, Phase()
        for a in group.ranks:
            for b in group.ranks:
                if a != b:
                    phase.add_transfer(group.topology, a, b, nbytes / n)
        phase.add_steps(_direct_link_class(group), 1)
        return Plan([phase], nbytes)


class RingBroadcast(Algorithm):
    """Pipelined ring (chain) broadcast or reduce: each hop forwards S; n-1 steps."""

    name = "ring"

    def __init__(self, collective: str):
        self.collective = collective

    def plan(self, group, nbytes):
        phase = Phase()
        rings = rotated_rings(group)
        for order in rings:
            for a, b in zip(order, order[1:], strict=False):
                if self.collective == "reduce":
                    a, b = b, a
                phase.add_transfer(group.topology, a, b, nbytes / len(rings))
        _ring_steps(phase, group, group.n - 1)
        return Plan([phase], nbytes)


class DirectGather(Algorithm):
    """Gather onto the first rank: every other rank sends its S/n shard straight to it, all at
    once (PyTorch's ``gather`` on NCCL: one grouped ncclSend per sender, ncclRecv per peer at the
    root), so the root's incoming links carry (n-1)/n·S."""

    name, collective = "direct", "gather"

    def plan(self, group, nbytes):
        root, n, phase = group.ranks[0], group.n, Phase()
        for a in group.ranks[1:]:
            phase.add_transfer(group.topology, a, root, nbytes / n)
        phase.add_steps(_direct_link_class(group), 1)
        return Plan([phase], nbytes)


class DirectSendRecv(Algorithm):
    """Point-to-point send of S from the first to the last rank (pipeline-parallel stages)."""

    name, collective = "direct", "send_recv"

    def plan(self, group, nbytes):
        src, dst = group.ranks[0], group.ranks[-1]
        phase = Phase()
        phase.add_transfer(group.topology, src, dst, nbytes)
        kind = group.topology.link_class(src, dst) if src != dst else "nvlink"
        phase.add_steps(kind, 1)
        return Plan([phase], nbytes)


def builtin_algorithms() -> list[Algorithm]:
    """Every built-in algorithm instance."""
    return [
        RingAllReduce(),
        TreeAllReduce(),
        TwoLevelAllReduce(),
        RsAgAllReduce(),
        NvlsAllReduce(),
        NvlsTreeAllReduce(),
        NvlsSharpAllReduce(),
        OneShotAllReduce(),
        TwoShotAllReduce(),
        RingGatherScatter("reduce_scatter"),
        TwoLevelGatherScatter("reduce_scatter"),
        NvlsGatherScatter("reduce_scatter"),
        RingGatherScatter("all_gather"),
        TwoLevelGatherScatter("all_gather"),
        NvlsGatherScatter("all_gather"),
        DirectAllToAll(),
        RingBroadcast("broadcast"),
        RingBroadcast("reduce"),
        DirectGather(),
        DirectSendRecv(),
    ]

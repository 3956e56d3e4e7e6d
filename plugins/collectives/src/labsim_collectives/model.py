"""Plans and prices: the cost model shared by every algorithm.

An algorithm turns a group of ranks and a message size into a :class:`Plan`:
a sequence of :class:`Phase` objects, each saying how many latency steps it
takes on each class of link and how many bytes it pushes through each link
*direction* of the topology. :func:`price` then charges, for each protocol
the plan allows, ::

    base + Σ_phases ( Σ_class steps · α  +  max_link bytes / (bandwidth · eff) )  +  γ · S

and keeps the fastest protocol (as NCCL's tuner does). ``γ = 2 / mem_bw`` is
one local read and write of the buffer. The per-phase bottleneck term is what
makes two-level algorithms, PCIe switches and oversubscribed spines matter.
:class:`Priced` keeps the per-phase split (latency vs. link-bound transfer,
and each link's share of the bottleneck) for the SimPy fabric, which stretches
the transfers when collectives share links.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from labsim.errors import UsageError

from labsim_collectives import params as P
from labsim_collectives.calibration import PROTOCOLS, ProtocolParams

Resource = tuple[str, int]  # (link name, direction)


@dataclass
class Group:
    """The ranks of one collective on a topology, grouped by node."""

    topology: object
    ranks: list[int]
    device: object

    def __post_init__(self):
        self.by_node: dict[int, list[int]] = defaultdict(list)
        for r in self.ranks:
            self.by_node[self.topology.node_of(r)].append(r)
        self.nodes = sorted(self.by_node)

    @property
    def n(self) -> int:
        return len(self.ranks)

    @property
    def single_node(self) -> bool:
        return len(self.nodes) == 1

    @property
    def per_node(self) -> int:
        """GPUs of the group in its smallest node."""
        return min(len(v) for v in self.by_node.values())

    def intra_class(self) -> str:
        """``nvlink`` if every pair inside each node talks over NVLink, else ``pcie``."""
        topo = self.topology
        for members in self.by_node.values():
            for a in members:
                for b in members:
                    if a != b and topo.link_class(a, b) != "nvlink":
                        return "pcie"
        return "nvlink"

    def rails(self) -> int:
        """Parallel inter-node rings: distinct NICs among the group's GPUs in one node."""
        topo = self.topology
        members = self.by_node[self.nodes[0]]
        return max(1, len({topo.nic_of(r % topo.gpus_per_node) for r in members}))


@dataclass
class Phase:
    """One step of a plan: latency ``steps`` per link class and byte ``loads`` per link direction."""

    steps: dict[str, float] = field(default_factory=dict)
    loads: dict[Resource, float] = field(default_factory=lambda: defaultdict(float))

    def add_steps(self, link_class: str, count: float) -> Phase:
        self.steps[link_class] = self.steps.get(link_class, 0.0) + count
        return self

    def add_transfer(self, topology, src: int, dst: int, nbytes: float) -> None:
        for resource in topology.path(src, dst):
            self.loads[resource] += nbytes

    def add_ring(self, topology, order: list[int], edge_bytes: float) -> None:
        """Each member sends *edge_bytes* to the next one in *order* (closing the ring)."""
        if len(order) < 2:
            return
        for i, src in enumerate(order):
            self.add_transfer(topology, src, order[(i + 1) % len(order)], edge_bytes)


@dataclass
class Plan:
    """What an algorithm does: its phases, the bytes S it reduces/copies locally, its protocols."""

    phases: list[Phase]
    nbytes: float
    protocols: dict[str, dict[str, ProtocolParams]] | None = None  # None: NCCL's three
    launches: int = 1
    overlap: bool = False  # True: the phases run pipelined (one kernel), priced as one phase


@dataclass(frozen=True)
class PricedPhase:
    """A phase priced under one protocol: ``latency`` (s, not shared), ``transfer`` (s at full
    bandwidth) and ``usage`` (link direction → share of its effective bandwidth while transferring)."""

    latency: float
    transfer: float
    usage: tuple[tuple[Resource, float], ...]


@dataclass(frozen=True)
class Priced:
    """A plan's cost: total ``seconds``, the ``protocol`` chosen and the priced phases."""

    seconds: float
    protocol: str
    phases: tuple[PricedPhase, ...]


def nccl_protocols(topology=None) -> dict[str, dict[str, ProtocolParams]]:
    """NCCL's three protocols per link class; NVLink constants of *topology*'s generation."""
    nvlink = P.generation(topology).nvlink if topology is not None else P.NVLINK
    return {
        p: {c: (nvlink[p] if c == "nvlink" else P.CLASS_PARAMS[c][p]) for c in P.CLASS_PARAMS}
        for p in PROTOCOLS
    }


def price(plan: Plan, topology, device) -> Priced:
    """The fastest protocol's cost of *plan* on *topology* with *device* (see module docs)."""
    if plan.overlap and len(plan.phases) > 1:
        plan = _pipelined(plan)
    mem_bw = float(getattr(device, "mem_bw", 0.0) or 0.0)
    gamma = 2.0 / mem_bw if mem_bw > 0 else 0.0
    links = {}
    for phase in plan.phases:
        for name, _ in phase.loads:
            if name not in links:
                link = topology.link(name)
                links[name] = (link.bandwidth, P.LINK_CLASS.get(link.kind, "net"))
    best = None
    for proto, table in (plan.protocols or nccl_protocols(topology)).items():
        used = {c for ph in plan.phases for c in ph.steps} | {
            links[n][1] for ph in plan.phases for n, _ in ph.loads
        }
        used &= set(table) or {"nvlink"}
        base = max((table[c].base for c in used), default=next(iter(table.values())).base)
        total = plan.launches * base + gamma * plan.nbytes
        priced = []
        for phase in plan.phases:
            latency = sum(count * table[c].alpha for c, count in phase.steps.items() if c in table)
            times = {
                res: (load + min(load, table[links[res[0]][1]].fill))
                / (links[res[0]][0] * table[links[res[0]][1]].eff)
                for res, load in phase.loads.items()
                if load > 0 and links[res[0]][1] in table
            }
            transfer = max(times.values(), default=0.0)
            usage = tuple((res, t / transfer) for res, t in times.items()) if transfer > 0 else ()
            priced.append(PricedPhase(latency, transfer, usage))
            total += latency + transfer
        if best is None or total < best.seconds:
            best = Priced(total, proto, tuple(priced))
    if best is None:
        raise UsageError("the plan allows no protocol")
    # the launch latency and local copy are charged before the first phase
    head = best.seconds - sum(p.latency + p.transfer for p in best.phases)
    first = best.phases[0] if best.phases else PricedPhase(0.0, 0.0, ())
    phases = (PricedPhase(first.latency + head, first.transfer, first.usage),) + best.phases[1:]
    return Priced(best.seconds, best.protocol, phases)


def _pipelined(plan: Plan) -> Plan:
    """*plan* with its phases merged into one: every latency step is still paid, but the bytes
    of all phases share the links at once, so the busiest link direction sets the transfer."""
    merged = Phase()
    for phase in plan.phases:
        for link_class, count in phase.steps.items():
            merged.add_steps(link_class, count)
        for resource, load in phase.loads.items():
            merged.loads[resource] += load
    return Plan([merged], plan.nbytes, plan.protocols, plan.launches)

"""Where a job's GPUs go: the cluster's nodes by GPU type and leaf switch, the free GPUs on
each, the placement rules, and how fragmented the free GPUs are over time.

Nodes are numbered as the topology numbers them; node *n* hangs off leaf ``n //
nodes_per_leaf`` (the topology's leaf switch, or rail scalable unit). With several GPU types
(``gpu_types`` of the cluster) the types take consecutive runs of nodes in the order given; a
job runs on one type only.

Placement rules (the cluster's ``placement``):

* ``pack`` (default): one node if one has room (best fit: the fullest node that fits), else one
  leaf (the fullest leaf that fits, its emptiest nodes first, so the job spans as few nodes as
  possible), else as few leaves as possible (the emptiest leaves and nodes first);
* ``spread``: the emptiest nodes first, wherever they are;
* ``any``: free GPUs in node order, blind to nodes and leaves (the first-fit of an allocator
  that does not know the topology).

A placement's locality is ``node`` (one node), ``leaf`` (several nodes under one leaf) or
``spine`` (several leaves: its traffic crosses the spine).
"""

from __future__ import annotations

PLACEMENTS = ("pack", "spread", "any")
LOCALITIES = ("node", "leaf", "spine")


class Nodes:
    """The free GPUs of every node, by type and leaf, with the time-integrated fragmentation."""

    def __init__(self, nodes: int, per_node: int, nodes_per_leaf: int, type_nodes: list[tuple[str, int]]):
        self.per_node = per_node
        self.free = [per_node] * nodes
        self.leaf_of = [n // max(1, nodes_per_leaf) for n in range(nodes)]
        self.types = [name for name, _ in type_nodes]
        self.type_of: list[int] = []
        self.ranges: list[tuple[int, int]] = []      # per type: nodes [lo, hi)
        lo = 0
        for t, (_name, count) in enumerate(type_nodes):
            self.type_of += [t] * count
            self.ranges.append((lo, lo + count))
            lo += count
        self.free_by_type = [per_node * (hi - lo) for lo, hi in self.ranges]
        self.capacity_by_type = list(self.free_by_type)
        # free GPUs per (type, leaf) cell: a leaf that two types share is two cells
        self.cell_of = [(self.type_of[n], self.leaf_of[n]) for n in range(nodes)]
        self.cell_free: dict[tuple[int, int], int] = {}
        for n in range(nodes):
            self.cell_free[self.cell_of[n]] = self.cell_free.get(self.cell_of[n], 0) + per_node
        self.total_free = per_node * nodes
        # nodes out of service (a failure under repair, a reclaimed spot node): node → back at
        self.down: dict[int, float] = {}
        self.down_since: dict[int, float] = {}
        self.down_s = 0.0                            # node-seconds out of service, of outages over
        # fragmentation: free GPUs on nodes that are partly busy, integrated over time
        self.stranded = 0
        self._since = 0.0
        self.free_area = 0.0
        self.stranded_area = 0.0

    @property
    def capacity(self) -> int:
        return self.per_node * len(self.free)

    # -- bookkeeping --------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        dt = now - self._since
        if dt > 0:
            self.free_area += self.total_free * dt
            self.stranded_area += self.stranded * dt
            self._since = now

    def _set(self, n: int, value: int) -> None:
        old = self.free[n]
        if 0 < old < self.per_node:
            self.stranded -= old
        if 0 < value < self.per_node:
            self.stranded += value
        delta = value - old
        self.free[n] = value
        self.total_free += delta
        self.free_by_type[self.type_of[n]] += delta
        self.cell_free[self.cell_of[n]] += delta

    def take(self, where: list[tuple[int, int]], now: float) -> None:
        self._tick(now)
        for n, g in where:
            self._set(n, self.free[n] - g)

    def give(self, where: list[tuple[int, int]], now: float) -> None:
        self._tick(now)
        for n, g in where:
            self._set(n, self.free[n] + g)

    def set_down(self, n: int, since: float, until: float, now: float) -> None:
        """Take node *n* (its jobs already gone) out of service from *since* until *until*."""
        if n in self.down:
            self.down[n] = max(self.down[n], until)
            return
        self._tick(now)
        self._set(n, 0)
        self.down[n] = until
        self.down_since[n] = since

    def restore_due(self, now: float) -> list[int]:
        """Put back the nodes whose outage has ended by *now*; the nodes put back."""
        back = sorted(n for n, until in self.down.items() if until <= now)
        if back:
            self._tick(now)
            for n in back:
                self.down_s += self.down.pop(n) - self.down_since.pop(n)
                self._set(n, self.per_node)
        return back

    def down_node_s(self, end: float) -> float:
        """Node-seconds out of service up to *end*."""
        return self.down_s + sum(max(0.0, min(u, end) - self.down_since[n]) for n, u in self.down.items())

    @property
    def down_gpus(self) -> int:
        return self.per_node * len(self.down)

    def fragmentation(self, now: float) -> float | None:
        """The share of free GPU-time that sat on partly busy nodes (free GPUs a whole-node job
        could not use), up to *now*."""
        self._tick(now)
        return self.stranded_area / self.free_area if self.free_area > 0 else None

    # -- placement ----------------------------------------------------------------------------

    def place(self, gpus: int, gtype: int, mode: str, cap: list[int] | None = None) -> list[tuple[int, int]] | None:
        """``[(node, gpus)]`` for *gpus* GPUs of type *gtype*, or None when they are not free
        (*cap*: the most GPUs each node may give this job, when less than its free GPUs — its
        CPUs or memory, a partition: :mod:`labsim_cluster.node_limits`)."""
        if gpus > self.free_by_type[gtype]:
            return None
        lo, hi = self.ranges[gtype]
        free, cell_free = self.free, self.cell_free
        if cap is not None:
            free = [min(f, c) for f, c in zip(free, cap)]
            if gpus > sum(free[lo:hi]):
                return None
            cell_free = {}
            for n in range(lo, hi):
                cell_free[self.cell_of[n]] = cell_free.get(self.cell_of[n], 0) + free[n]
        if mode == "any":
            return _take_in_order(free, range(lo, hi), gpus)
        if mode == "spread":
            return _take_in_order(free, sorted(range(lo, hi), key=lambda n: (-free[n], n)), gpus)
        if gpus <= self.per_node:
            best = None
            for n in range(lo, hi):
                f = free[n]
                if f >= gpus and (best is None or f < free[best]):
                    best = n
                    if f == gpus:
                        break
            if best is not None:
                return [(best, gpus)]
        cells = sorted({self.leaf_of[n] for n in range(lo, hi)})
        fits = [leaf for leaf in cells if cell_free[(gtype, leaf)] >= gpus]
        if fits:
            leaf = min(fits, key=lambda c: (cell_free[(gtype, c)], c))
            nodes = [n for n in range(lo, hi) if self.leaf_of[n] == leaf]
            return _take_in_order(free, sorted(nodes, key=lambda n: (-free[n], n)), gpus)
        rank = {leaf: i for i, leaf in enumerate(sorted(cells, key=lambda c: (-cell_free[(gtype, c)], c)))}
        order = sorted(range(lo, hi), key=lambda n: (rank[self.leaf_of[n]], -free[n], n))
        return _take_in_order(free, order, gpus)

    def locality(self, where: list[tuple[int, int]]) -> str:
        """``node``, ``leaf`` or ``spine`` for a placement."""
        if len(where) == 1:
            return "node"
        leaf = self.leaf_of[where[0][0]]
        return "leaf" if all(self.leaf_of[n] == leaf for n, _ in where) else "spine"

    def leaves(self, where: list[tuple[int, int]]) -> int:
        return len({self.leaf_of[n] for n, _ in where})


def _take_in_order(free, order, gpus: int) -> list[tuple[int, int]] | None:
    out, need = [], gpus
    for n in order:
        take = min(free[n], need)
        if take:
            out.append((n, take))
            need -= take
            if need == 0:
                return out
    return None


__all__ = ["LOCALITIES", "Nodes", "PLACEMENTS"]

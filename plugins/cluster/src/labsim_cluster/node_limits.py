"""What keeps a job's GPUs off a node besides the node's free GPUs: its free CPU cores and host
memory, and a partition of its leaf switch.

CPUs and memory (``node_cpus`` / ``node_mem_gib`` of the cluster, ``cpu`` / ``mem_gib`` of the
jobs) are held per node: a job's CPUs and memory are split evenly over its GPUs, and each GPU it
places on a node brings its share there (a 4-GPU job asking 32 cores and 200 GiB holds 8 cores
and 50 GiB on a node for each of its GPUs there). A node takes as many of the job's GPUs as its
free GPUs, CPUs and memory all allow; the placement rules then choose among those nodes as
usual (:mod:`labsim_cluster.placement`).

A partitioned leaf (a ``partition`` incident, for ``partition_duration_s``) cuts its nodes off
the other leaves: a job placed on one node there still runs (its traffic stays on the node), but
a job spread over several nodes is kept off the leaf until the partition ends.
"""

from __future__ import annotations

import math

EPS = 1e-9


class NodeLimits:
    """Per-node CPUs and memory held by the running jobs, and the leaves cut off now."""

    def __init__(self, nodes, node_cpus: float | None, node_mem_gib: float | None):
        self.nodes = nodes
        count = len(nodes.free)
        #: per resource (cpu, mem_gib): what each node has, and what is free on it now
        self.size = {name: float(v) for name, v in (("cpu", node_cpus), ("mem_gib", node_mem_gib)) if v}
        self.free = {name: [size] * count for name, size in self.size.items()}
        #: leaf → when its partition ends
        self.cut: dict[int, float] = {}

    # -- CPUs and memory ----------------------------------------------------------------------

    def _shares(self, job) -> list[tuple[str, float]]:
        """(resource, per GPU) for the resources *job* asks for and the nodes count."""
        return [(name, getattr(job, name) / job.gpus) for name in self.size if getattr(job, name) > 0]

    def holds(self, job, node: int) -> bool:
        """Whether *node* has the CPUs and memory free for all of fractional *job* (it runs on one
        GPU there and holds what it asks for whole)."""
        return all(self.free[name][node] + EPS >= getattr(job, name)
                   for name in self.size if getattr(job, name) > 0)

    def fits_a_node(self, job) -> bool:
        """Whether an empty node holds the CPUs and memory fractional *job* asks for."""
        return all(getattr(job, name) <= size + EPS for name, size in self.size.items())

    def per_node(self, job) -> int:
        """The most of *job*'s GPUs one empty node can hold (its GPUs, CPUs and memory)."""
        most = self.nodes.per_node
        for name, share in self._shares(job):
            most = min(most, math.floor(self.size[name] / share + EPS))
        return most

    def take(self, job, where) -> None:
        for name, share in self._shares(job):
            free = self.free[name]
            for n, g in where:
                free[n] -= g * share

    def give(self, job, where) -> None:
        for name, share in self._shares(job):
            free = self.free[name]
            for n, g in where:
                free[n] = min(self.size[name], free[n] + g * share)

    # -- partitions ---------------------------------------------------------------------------

    def partition(self, leaf: int, until: float) -> None:
        """Cut *leaf* off until *until*."""
        self.cut[leaf] = max(self.cut.get(leaf, until), until)

    def partition_ends(self, now: float) -> list[float]:
        """When the partitions still on at *now* end (those over are forgotten)."""
        for leaf in [leaf for leaf, until in self.cut.items() if until <= now]:
            del self.cut[leaf]
        return list(self.cut.values())

    # -- placement ----------------------------------------------------------------------------

    def place(self, job, gtype: int, mode: str, now: float) -> list[tuple[int, int]] | None:
        """``[(node, gpus)]`` for *job* on type *gtype* within the nodes' free GPUs, CPUs and
        memory, off the partitioned leaves if it spans several nodes; None when it does not fit."""
        nodes = self.nodes
        shares = self._shares(job)
        cap = None
        if shares:
            cap = list(nodes.free)
            for name, share in shares:
                cap = [min(c, math.floor(f / share + EPS)) for c, f in zip(cap, self.free[name])]
        where = nodes.place(job.gpus, gtype, mode, cap)
        if where is None or len(where) == 1 or not self.partition_ends(now):
            return where
        leaf_of = nodes.leaf_of
        if not any(leaf_of[n] in self.cut for n, _ in where):
            return where
        cap = [0 if leaf_of[n] in self.cut else c for n, c in enumerate(cap or nodes.free)]
        return nodes.place(job.gpus, gtype, mode, cap)


__all__ = ["NodeLimits"]

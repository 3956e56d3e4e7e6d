"""The job's links shared by its simulated ranks: data-parallel collectives and pipeline hand-offs
as flows on the topology (:class:`labsim_collectives.sim.Fabric`).

A stage's gradient reduction and its activation hand-offs leave the node through the same NIC
(ranks are ordered TP, DP, PP), so when they overlap each gets a max-min fair share of it rather
than the whole link. Tensor-parallel collectives stay priced alone: they run inside a node,
between kernels, with nothing else on those NVLinks.
"""

from __future__ import annotations

from labsim_collectives.plugin import BY_NAME
from labsim_collectives.sim import Fabric, Record


class SharedLinks(Fabric):
    """A :class:`Fabric` that prices each distinct (collective, size, ranks) once: an iteration
    repeats the same hand-offs and bucket collectives thousands of times."""

    def __post_init__(self):
        super().__post_init__()
        self._priced = {}

    def collective(self, collective, nbytes, ranks, algorithm="auto", tag=""):
        """Generator: run one collective as flows on the shared links; returns its seconds."""
        key = (collective, int(nbytes), tuple(ranks), algorithm)
        hit = self._priced.get(key)
        if hit is None:
            hit = self._priced[key] = BY_NAME[collective].cost(
                nbytes, ranks=list(ranks), topology=self.topology, algorithm=algorithm)
        chosen, priced = hit
        start = self.env.now
        for phase in priced.phases:
            if phase.latency > 0:
                yield self.env.timeout(phase.latency)
            if phase.transfer > 0:
                yield self._transfer(phase.transfer, dict(phase.usage))
        if tag:
            self.records.append(Record(collective, chosen, int(nbytes), key[2], start, self.env.now,
                                       priced.seconds, tag))
        return self.env.now - start


def shared_links(env, costs):
    """The job's :class:`SharedLinks` in *env*, or None without a topology (a bare device prices
    every transfer alone)."""
    topology = costs.comms.topology
    if topology is None:
        return None
    return SharedLinks(env, topology, costs.device)

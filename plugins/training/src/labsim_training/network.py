"""The job's links shared by its simulated ranks: data-parallel collectives and pipeline hand-offs
as flows on the topology (:class:`labsim_collectives.sim.Fabric`).

A stage's gradient reduction and its activation hand-offs leave the node through the same NIC
(ranks are ordered TP, DP, PP), so when they overlap each gets a max-min fair share of it rather
than the whole link. Tensor-parallel collectives stay priced alone: they run inside a node,
between kernels, with nothing else on those NVLinks.
"""

from __future__ import annotations

from labsim_collectives.sim import Fabric


class SharedLinks(Fabric):
    """A :class:`Fabric` whose collectives enter :attr:`records` only when tagged (the
    per-stage timeline asks for them; an iteration's thousands of bucket calls do not)."""

    def collective(self, collective, nbytes, ranks, algorithm="auto", tag="", record=None):
        """Generator: run one collective as flows on the shared links; returns its seconds."""
        return super().collective(collective, nbytes, ranks, algorithm, tag,
                                  record=bool(tag) if record is None else record)


def shared_links(env, costs):
    """The job's :class:`SharedLinks` in *env*, or None without a topology (a bare device prices
    every transfer alone)."""
    topology = costs.comms.topology
    if topology is None:
        return None
    return SharedLinks(env, topology, costs.device)

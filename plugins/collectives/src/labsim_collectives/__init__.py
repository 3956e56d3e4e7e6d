"""labsim-collectives: collective communication algorithms priced on interconnect topologies.

Public API: the registered collectives (``labsim.collective_time``)
and :class:`~labsim_collectives.algorithms.Algorithm` for third-party algorithms, and
:class:`~labsim_collectives.sim.Fabric` for collectives that share links inside a SimPy run.
"""

from labsim_collectives.algorithms import OWN_ALLREDUCE_KERNELS, Algorithm
from labsim_collectives.plugin import BY_NAME, CollectiveOp
from labsim_collectives.sim import Fabric

__all__ = ["Algorithm", "BY_NAME", "CollectiveOp", "Fabric", "OWN_ALLREDUCE_KERNELS"]

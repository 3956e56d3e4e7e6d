"""labsim-sharing: one GPU shared by several frameworks (tenants) under time-slicing, MPS or MIG."""

from labsim_sharing.fluid import FluidGpu
from labsim_sharing.mig import MIG_PROFILES, mig_instance_device

__all__ = ["FluidGpu", "MIG_PROFILES", "mig_instance_device"]

"""labsim-training: distributed training jobs (Megatron, DeepSpeed ZeRO, FSDP, DDP) simulated on
real topologies — iteration time, its breakdown, memory per GPU, MFU and cost.

>>> from labsim_training import estimate                            # doctest: +SKIP
"""

from labsim_training.api import estimate
from labsim_training.job import TrainingJob
from labsim_training.layout import Layout, Sharding, make_layout

__all__ = ["estimate", "TrainingJob", "Layout", "Sharding", "make_layout"]

"""labsim-training: distributed training jobs (Megatron, DeepSpeed ZeRO, FSDP, DDP) simulated on
real topologies — iteration time, its breakdown, memory per GPU, MFU and cost.

>>> from labsim_training import estimate                            # doctest: +SKIP

The names below load their modules on first use: every ``labsim`` command loads this plugin,
and a run that trains nothing need not load its engine.
"""

from importlib import import_module

#: each public name → the module that defines it
_HOMES = {"estimate": "labsim_training.api", "TrainingJob": "labsim_training.job",
          "Layout": "labsim_training.layout", "Sharding": "labsim_training.layout",
          "make_layout": "labsim_training.layout"}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(import_module(home), name)
    return value


__all__ = ["estimate", "TrainingJob", "Layout", "Sharding", "make_layout"]

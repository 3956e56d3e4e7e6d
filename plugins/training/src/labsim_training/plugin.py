"""labsim entry point: the ``training`` workload and the training frameworks."""

from __future__ import annotations

from labsim import hookimpl

from labsim_training.frameworks import FRAMEWORKS
from labsim_training.job import TrainingWorkload


@hookimpl
def register_workloads(register):
    register(TrainingWorkload)


@hookimpl
def register_frameworks(register):
    for cls in FRAMEWORKS:
        register(cls)


@hookimpl
def register_commands(cli):
    from labsim_training.scale import scale_command

    cli.add_command(scale_command)

"""labsim entry point: the ``time_slicing``, ``mps`` and ``mig`` sharing modes and ``labsim sharing``."""

from __future__ import annotations

from labsim import hookimpl

from labsim_sharing.modes import Mig, Mps, TimeSlicing


@hookimpl
def register_sharing_modes(register):
    for cls in (TimeSlicing, Mps, Mig):
        register(cls)


@hookimpl
def register_frameworks(register):
    from labsim_sharing.notebook import Notebook

    register(Notebook)


@hookimpl
def register_commands(cli):
    from labsim_sharing.compare import sharing_command

    cli.add_command(sharing_command)

"""labsim entry point: ``labsim report`` and its built-in sections."""

from __future__ import annotations

from labsim import hookimpl


@hookimpl
def register_commands(cli):
    from labsim_report.command import report_command

    cli.add_command(report_command)


@hookimpl
def register_report_sections(register):
    from labsim_report.sections import BUILTIN

    for fn in BUILTIN:
        register(fn)

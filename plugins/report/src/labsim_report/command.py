"""``labsim report PATH [--out FILE]``: one self-contained HTML page of a finished run."""

from __future__ import annotations

from pathlib import Path

import click


def sections():
    """The built-in sections, then every plugin's (``register_report_sections``)."""
    from labsim.registry import get_registry

    found = []
    hook = get_registry().loaded.pm.hook.register_report_sections
    for impl in reversed(hook.get_hookimpls()):  # registration order: labsim-report's own first
        impl.function(register=found.append)
    return found


@click.command("report")
@click.argument("path", type=click.Path())
@click.option("--out", "out", type=click.Path(dir_okay=False), help="The HTML file (default: PATH/report.html).")
def report_command(path, out):
    """One self-contained HTML page of a finished run: headline figures, bottleneck, and the plots
    of its serving, training, cluster and shared-GPU tables (no network needed to view it)."""
    from labsim_report.page import build, write_atomic

    folder = Path(path)
    target = Path(out) if out else folder / "report.html"
    written = write_atomic(target, build(folder, sections()))
    click.echo(f"report: {written}")

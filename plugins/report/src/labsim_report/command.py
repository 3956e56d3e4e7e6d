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
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="The HTML file (default: PATH/report.html, or beside a sweep database or search JSON).")
@click.option("--slo", "slo", default=None, metavar="METRIC<=VALUE",
              help="For a sweep: mark each framework's capacity, the highest throughput whose "
                   "headline METRIC meets it (e.g. 'TTFT p99 (ms)<=2000').")
def report_command(path, out, slo):
    """One self-contained HTML page of a finished run — headline figures, bottleneck, and the plots
    of its serving, training, cluster and shared-GPU tables — of a sweep database
    (throughput-latency curves per framework, capacity under --slo), or of a search's --json
    (the Pareto front; the best training layouts per size). No network needed to view it."""
    from labsim_report.page import build, write_atomic

    target_path = Path(path)
    if target_path.is_file() and target_path.suffix.lower() == ".json":
        from labsim_report.search_page import build_search

        target = Path(out) if out else target_path.with_suffix(".html")
        written = write_atomic(target, build_search(target_path))
    elif target_path.is_file():
        from labsim_report.sweep_page import build_sweep

        target = Path(out) if out else target_path.with_suffix(".html")
        written = write_atomic(target, build_sweep(target_path, slo))
    else:
        target = Path(out) if out else target_path / "report.html"
        written = write_atomic(target, build(target_path, sections()))
    click.echo(f"report: {written}", err=True)

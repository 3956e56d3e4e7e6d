"""Figures in README.md, docs/ and example headers are made by the command beside them.

Each sits in a cog block (docs/figures.py). ``.ci/run`` checks them all with
``cog --check -I docs README.md docs/*.md examples/*.yaml`` (under a minute here: the serving
benchmarks simulate every published row). Here, on every ``pytest``: no command output is
written by hand outside a cog block, and the machinery works end to end on the cheapest file;
set ``LABSIM_CHECK_FIGURES=1`` to run the full check from pytest too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

FENCE = re.compile(r"^```")


def _documents(root):
    return [root / "README.md", *sorted((root / "docs").glob("*.md")),
            *sorted((root / "examples").glob("*.yaml"))]


def _outside_cog(text: str):
    """Lines of *text* that are not inside a [[[cog ... [[[end]]] block."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if "[[[cog" in line:
            inside = True
        if not inside:
            yield number, line
        if "[[[end]]]" in line:
            inside = False


def test_no_command_output_is_written_by_hand(root):
    offenders = []
    for path in _documents(root):
        lines = list(_outside_cog(path.read_text(encoding="utf-8")))
        for (number, line), (_, following) in zip(lines, lines[1:]):
            if FENCE.match(line) and following.startswith("$ "):
                offenders.append(f"{path.name}:{number + 1}: {following}")
            if path.suffix == ".yaml" and re.match(r"#\s+\$ ", line):
                offenders.append(f"{path.name}:{number}: {line}")
    assert not offenders, ("command output outside a cog block (wrap it, see docs/figures.py):\n"
                           + "\n".join(offenders))


def test_every_fidelity_benchmark_in_the_readme_is_generated(root):
    text = (root / "README.md").read_text(encoding="utf-8")
    for script in sorted((root / "benchmarks").glob("fidelity_*.py")):
        assert f'figures.script("benchmarks/{script.name}"' in text, script.name


def _cog_check(root, *files):
    return subprocess.run([sys.executable, "-m", "cogapp", "--check", "-I", "docs", *files],
                          cwd=root, capture_output=True, text=True)


def test_the_cheapest_figures_are_current(root):
    proc = _cog_check(root, "examples/quickstart.yaml")
    assert proc.returncode == 0, (proc.stdout + proc.stderr
                                  + "\nregenerate: cog -r -I docs examples/quickstart.yaml")


def test_a_stale_figure_fails_the_check(root, tmp_path):
    stale = tmp_path / "stale.md"
    stale.write_text('<!-- [[[cog import figures; figures.labsim("validate docs/broken.yaml") ]]] -->\n'
                     "```text\nwritten by hand\n```\n<!-- [[[end]]] -->\n", encoding="utf-8")
    proc = _cog_check(root, str(stale))
    assert proc.returncode != 0 and "changed" in proc.stdout + proc.stderr


@pytest.mark.skipif(os.environ.get("LABSIM_CHECK_FIGURES") != "1",
                    reason="the full check takes ~1 minute; .ci/run runs it (cog --check)")
def test_every_figure_is_current(root):
    files = [str(p.relative_to(root)) for p in _documents(root)]
    proc = _cog_check(root, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr

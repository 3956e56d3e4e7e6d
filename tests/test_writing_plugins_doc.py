"""docs/writing_plugins.md stays true: its Python blocks are cut from labsim-fifo, its
experiment runs, and fifo's rows share one well-formed requests.csv with vLLM's."""

from __future__ import annotations

import csv
import re
import textwrap

from labsim_llm.request import STATUSES

DOC = "docs/writing_plugins.md"
SOURCE = "examples/plugins/labsim-fifo/src/labsim_fifo/__init__.py"


def _blocks(root, lang):
    text = (root / DOC).read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_every_python_block_is_cut_from_the_plugin(root):
    source = (root / SOURCE).read_text(encoding="utf-8")
    blocks = _blocks(root, "python")
    assert len(blocks) >= 5
    for block in blocks:
        lines = textwrap.dedent(block).strip("\n").splitlines()
        # the block's lines appear in the file, consecutively, at one indentation
        found = any("\n".join(i + s if s else s for s in lines) in source for i in ("", "    "))
        assert found, f"this block of {DOC} is not in {SOURCE}:\n{block}"


def test_the_toml_block_is_the_plugins_entry_point(root):
    (block,) = _blocks(root, "toml")
    pyproject = (root / "examples/plugins/labsim-fifo/pyproject.toml").read_text(encoding="utf-8")
    assert block.strip() in pyproject


def test_the_tutorial_experiment_runs(root, tmp_path):
    from click.testing import CliRunner
    from labsim.cli import cli

    (block,) = _blocks(root, "yaml")
    path = tmp_path / "tutorial.yaml"
    path.write_text(block, encoding="utf-8")
    res = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "out" / "requests.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["framework"] for r in rows} == {"fifo", "vllm"}
    assert all(None not in r and None not in r.values() for r in rows)     # as many fields as the header
    assert {r["status"] for r in rows} <= set(STATUSES)
    fifo = [r for r in rows if r["framework"] == "fifo" and r["status"] == "finished"]
    assert any(int(r["turn"]) > 0 for r in fifo)                            # conversations went on

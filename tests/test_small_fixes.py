"""Small traps a new user fell into (issue 11, item 13)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest


def test_labsim_run_keeps_stdout_clean(root):
    code = ("import labsim; labsim.run('examples/quickstart.yaml', "
            "overrides=['workload.total_duration=3'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "run_finished" not in proc.stderr          # info lines are off by default


def test_collective_time_docstring_examples_run(installed_registry):
    import labsim

    two_nodes = labsim.collective_time("all_reduce", 1 << 30, ranks=16, topology="dgx-h100",
                                       nodes=2)
    same = labsim.collective_time("all_reduce", 1 << 30, ranks=16,
                                  topology={"type": "dgx-h100", "nodes": 2})
    one_node = labsim.collective_time("all_reduce", 1 << 30, ranks=8, topology="dgx-h100")
    assert two_nodes == same > one_node
    assert labsim.collective_time("send_recv", 8 << 20, ranks=[0, 8],
                                  topology={"type": "dgx-h100", "nodes": 2}) > 0
    with pytest.raises(labsim.UsageError, match="nodes"):
        labsim.collective_time("all_reduce", 1 << 30, ranks=16, topology="dgx-h100")


def _predict(tmp_path, text):
    ops = tmp_path / "ops.csv"
    ops.write_text(text)
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "labsim", "predict", "--device", "H100-SXM", "--input", str(ops),
         "--output", str(out)], capture_output=True, text=True)
    return proc, (list(csv.DictReader(open(out))) if out.exists() else [])


def test_predict_prices_a_collective_over_two_nodes(tmp_path):
    proc, rows = _predict(tmp_path, "op,collective,nbytes,ranks,topology,nodes\n"
                                    "collective,all_reduce,1073741824,8,dgx-h100,\n"
                                    "collective,all_reduce,1073741824,16,dgx-h100,2\n")
    assert proc.returncode == 0, proc.stderr
    one, two = (float(r["predicted_ms"]) for r in rows)
    assert two > one > 0
    proc, _ = _predict(tmp_path, "op,collective,nbytes,ranks,nodes\n"
                                 "collective,all_reduce,1024,16,2\n")
    assert proc.returncode == 2 and "line 2: column 'nodes' needs a 'topology'" in proc.stderr


def test_a_model_too_big_gets_a_split_that_fits(root):
    proc = subprocess.run(
        [sys.executable, "-m", "labsim", "validate", "examples/vllm_llama405b_tp8_pp2.yaml",
         "--set", "frameworks_to_test[0].config.pipeline_parallel_size=1"],
        cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "use tensor_parallel_size 8 × pipeline_parallel_size 2 (16 GPUs" in proc.stderr
    assert "≥ 11" not in proc.stderr


def test_the_ray_hint_names_an_install_that_works(root):
    text = (root / "core" / "src" / "labsim" / "sweep.py").read_text()
    assert "pip install 'labsim[ray]'" not in text
    assert "pip install -e 'core[ray]'" in text


def test_examples_are_not_duplicates_and_the_tour_leaves_the_tree_clean(root):
    texts = {}
    for path in sorted((root / "examples").glob("*.yaml")):
        body = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith(("#", "name:")))
        assert body not in texts, f"{path.name} repeats {texts.get(body)}"
        texts[body] = path.name
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "examples/results/summary.json"],
                             cwd=root)
    assert ignored.returncode == 0, "seed001.yaml writes examples/results/: keep it ignored"


def test_warnings_after_a_cli_call_still_reach_stderr(capsys):
    import structlog
    from click.testing import CliRunner
    from labsim.cli import cli

    assert CliRunner().invoke(cli, ["schema", "summary"]).exit_code == 0
    structlog.get_logger("labsim.test").warning("after_the_cli")
    assert "after_the_cli" in capsys.readouterr().err

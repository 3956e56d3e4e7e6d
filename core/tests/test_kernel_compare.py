"""`labsim compare RUN_DIR_A RUN_DIR_B`: two finished runs side by side, bad folders exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim.compare import load_summary, merge_summaries
from labsim.errors import UsageError


@pytest.fixture
def runner(registry, monkeypatch):
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(cli_mod.cli, [str(a) for a in args], catch_exceptions=False)


def test_compare_two_runs_prints_every_framework_with_ratios(runner, basic_file, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke(runner, "run", basic_file, "--out", a, "--seed", 1).exit_code == 0
    assert invoke(runner, "run", basic_file, "--out", b, "--seed", 2).exit_code == 0
    result = invoke(runner, "compare", a, b)
    assert result.exit_code == 0, result.output
    assert "a: basic (seed 1" in result.output and "b: basic (seed 2" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "a:a", "b:a", "b:a/a:a"]
    served = next(line for line in result.output.splitlines() if line.startswith("served"))
    assert served.split()[-1] == "1x"          # both runs served all 40 requests


def test_compare_ratio_matches_the_summaries(runner, basic_file, tmp_path):
    a, b = tmp_path / "x", tmp_path / "y"
    invoke(runner, "run", basic_file, "--out", a, "--seed", 1)
    invoke(runner, "run", basic_file, "--out", b, "--seed", 7)
    merged = merge_summaries({"x": load_summary(a), "y": load_summary(b)})
    assert list(merged["frameworks"]) == ["x:a", "y:a"]
    sa = json.loads((a / "summary.json").read_text())["frameworks"]["a"]
    sb = json.loads((b / "summary.json").read_text())["frameworks"]["a"]
    headers, rows = cli_mod.headline_rows(merged, cli_mod.get_registry())
    row = next(r for r in rows if r[0] == "mean wait (s)")
    assert row[-1] == f"{sb['wait_s']['mean'] / sa['wait_s']['mean']:.3g}x"


@pytest.mark.parametrize("make", ["missing", "empty", "garbage", "no_frameworks"])
def test_compare_bad_run_folder_exits_2(runner, basic_file, tmp_path, make):
    good = tmp_path / "good"
    invoke(runner, "run", basic_file, "--out", good)
    bad = tmp_path / "bad"
    if make != "missing":
        bad.mkdir()
    if make == "garbage":
        (bad / "summary.json").write_text("{not json")
    if make == "no_frameworks":
        (bad / "summary.json").write_text(json.dumps({"experiment": "x"}))
    result = invoke(runner, "compare", good, bad)
    assert result.exit_code == 2
    assert result.output.startswith("Error:") and "Traceback" not in result.output
    with pytest.raises(UsageError):
        load_summary(bad)


def test_compare_needs_two_runs(runner, basic_file, tmp_path):
    invoke(runner, "run", basic_file, "--out", tmp_path / "a")
    result = invoke(runner, "compare", tmp_path / "a")
    assert result.exit_code == 2 and "compare needs two runs" in result.output

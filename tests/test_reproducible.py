"""A run can be reproduced from its own summary: ``resolved_experiment`` is the experiment as run."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from labsim.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_rerunning_the_resolved_experiment_gives_the_same_outputs(tmp_path):
    first = tmp_path / "first"
    result = CliRunner().invoke(cli, ["run", str(ROOT / "examples" / "quickstart.yaml"), "--out", str(first),
                                      "--set", "workload.total_duration=5", "--seed", "9"])
    assert result.exit_code == 0, result.output
    summary = json.loads((first / "summary.json").read_text())
    resolved = summary["resolved_experiment"]
    assert resolved["simulation"]["random_seed"] == 9               # the seed it ran with
    assert resolved["workload"]["total_duration"] == 5               # the override applied
    assert "max_num_seqs" in json.dumps(resolved["frameworks_to_test"])  # defaults filled in
    again_file = tmp_path / "resolved.json"
    again_file.write_text(json.dumps(resolved))
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["run", str(again_file), "--out", str(again)])
    assert result.exit_code == 0, result.output
    for name in ("summary.json", "requests.csv"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name

"""The command line: exit codes, messages without tracebacks, outputs."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner
from labsim import cli as cli_mod
from labsim.plugins import PluginInfo


@pytest.fixture
def runner(registry, monkeypatch):
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(cli_mod.cli, [str(a) for a in args], catch_exceptions=False)


def test_run_prints_a_table_and_writes_outputs(runner, basic_file, tmp_path):
    result = invoke(runner, "run", basic_file, "--out", tmp_path / "o", "--seed", 5)
    assert result.exit_code == 0, result.output
    assert "basic: seed 5" in result.output
    assert "served" in result.output and "40" in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["seed"] == 5


def test_run_defaults_to_a_fresh_folder_under_runs(runner, basic_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "run", basic_file).exit_code == 0
    assert invoke(runner, "run", basic_file).exit_code == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_invalid_file_exits_2_without_traceback(runner, write):
    path = write("bad.yaml", "frameworks_to_test: [{name: a, type: nope}]\n")
    result = invoke(runner, "validate", path)
    assert result.exit_code == 2
    assert "Error: Invalid experiment (1 problem)" in result.output
    assert "frameworks_to_test[0].type: No framework named 'nope'" in result.output
    assert "Traceback" not in result.output


def test_missing_file_exits_2(runner, tmp_path):
    result = invoke(runner, "run", tmp_path / "nothing.yaml")
    assert result.exit_code == 2 and "Experiment file not found" in result.output


def test_bad_set_exits_2(runner, basic_file):
    result = invoke(runner, "run", basic_file, "--set", "frameworks_to_test[3].name=x")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_validate_accepts_a_good_file(runner, basic_file):
    result = invoke(runner, "validate", basic_file)
    assert result.exit_code == 0 and "valid. Frameworks: a (queue)." in result.output


def test_list_kind(runner):
    result = invoke(runner, "list", "distributions")
    assert result.exit_code == 0
    assert "Exponential" in result.output and "memoryless" in result.output
    data = json.loads(invoke(runner, "list", "frameworks", "--json").output)
    assert data[0]["name"] == "queue" and data[0]["aliases"] == ["QUEUE", "fifo-queue"]


def test_plugins_table_json_and_check(runner, registry):
    result = invoke(runner, "plugins", "--all")
    assert result.exit_code == 0 and "labsim.default_plugins.distributions" in result.output
    data = json.loads(invoke(runner, "plugins", "--json", "--all").output)
    assert any(p["provides"].get("frameworks") == ["queue"] for p in data["plugins"])
    assert invoke(runner, "plugins", "--check").exit_code == 0
    registry.loaded.failed["broken"] = "labsim-broken: ModuleNotFoundError: No module named 'x'"
    registry.loaded.failed_info["broken"] = PluginInfo("broken", "labsim-broken", "0.1")
    result = invoke(runner, "plugins", "--check")
    assert result.exit_code == 1 and "ERROR labsim-broken: ModuleNotFoundError" in result.output


def test_schema_prints_the_composed_schema(runner):
    schema = json.loads(invoke(runner, "schema").output)
    assert "queue" in json.dumps(schema["$defs"]["framework"])
    summary = json.loads(invoke(runner, "schema", "summary").output)
    assert summary["title"] == "labsim run summary"


def test_json_logs(runner, basic_file, tmp_path):
    result = runner.invoke(
        cli_mod.cli,
        [
            "--log-format",
            "json",
            "--log-level",
            "info",
            "run",
            str(basic_file),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "run_finished" for line in lines)


def test_predict_with_unknown_device_exits_2(runner, write, tmp_path):
    ops = write("ops.csv", "op,m,n,k,dtype\ngemm,1,2,3,bf16\n")
    result = invoke(
        runner, "predict", "--device", "nope", "--input", ops, "--output", tmp_path / "o.csv"
    )
    assert result.exit_code == 2 and "No device named 'nope'" in result.output


def test_sweep_runs_every_point_and_resumes(runner, basic_file, tmp_path, monkeypatch):
    monkeypatch.setattr("labsim.orchestrator.get_registry", cli_mod.get_registry)
    db = tmp_path / "s.sqlite"
    args = [
        "sweep",
        basic_file,
        "--grid",
        "workload.count=5,10",
        "--grid",
        "frameworks_to_test[0].config.service_dist_config.mean=0.1,0.2",
        "--db",
        db,
        "--workers",
        1,
    ]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    assert "4 of 4 points done" in result.output
    rows = sqlite3.connect(db).execute("SELECT point, status FROM runs").fetchall()
    assert len(rows) == 4 and {r[1] for r in rows} == {"ok"}
    again = invoke(runner, *args)
    assert "ok" not in again.output.splitlines()[0]  # nothing re-run
    assert "4 of 4 points done" in again.output

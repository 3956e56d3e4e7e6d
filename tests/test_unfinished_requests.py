"""A run stopped by max_simulation_time says which requests its percentiles leave out."""

from __future__ import annotations

import json

from click.testing import CliRunner
from labsim.cli import cli


def test_unfinished_requests_are_counted_shown_and_warned(root, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["run", str(root / "examples" / "quickstart.yaml"), "--out", str(out),
         "--set", "simulation.max_simulation_time=30", "--set", "workload.total_duration=40"],
    )
    assert result.exit_code == 0, result.output + result.stderr
    section = json.loads((out / "summary.json").read_text())["frameworks"]["vllm"]
    counts = section["requests"]
    assert counts["unfinished"] > 0
    assert counts["total"] == counts["finished"] + counts["unfinished"] + counts["rejected"]
    assert counts["percentiles_cover"].startswith("finished requests")
    assert 0 < counts["in_statistics"] <= counts["finished"]
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "unfinished requests" in rows
    assert f"{counts['unfinished']}" in rows["unfinished requests"]
    assert "percentiles cover finished requests" in result.stdout
    assert "requests_left_out_of_statistics" in result.stderr      # the console warning
    assert "unfinished=" in result.stderr


def test_a_drained_run_has_no_caveat(root, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["run", str(root / "examples" / "quickstart.yaml"), "--out", str(tmp_path / "r"),
         "--set", "workload.total_duration=5", "--set", "metrics_config.warm_up_duration_s=0"],
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert "note:" not in result.stdout
    assert "requests_left_out_of_statistics" not in result.stderr


def test_compare_repeats_the_caveat(root, tmp_path):
    runner = CliRunner()
    for name, limit in (("a", "30"), ("b", "600")):
        result = runner.invoke(cli, ["run", str(root / "examples" / "quickstart.yaml"),
                                     "--out", str(tmp_path / name),
                                     "--set", f"simulation.max_simulation_time={limit}",
                                     "--set", "workload.total_duration=40"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "unfinished" in notes[0]


def test_a_request_still_in_the_api_server_counts_as_unfinished(root, installed_registry):
    from labsim.orchestrator import run

    # at 16.28 s one request has arrived and is still in vLLM's API server (frontend_latency)
    summary = run(str(root / "examples" / "quickstart.yaml"),
                  overrides=["simulation.max_simulation_time=16.28", "workload.total_duration=60"],
                  registry=installed_registry).summary
    counts = summary["frameworks"]["vllm"]["requests"]
    assert counts["total"] == summary["workload"]["requests_sent"]

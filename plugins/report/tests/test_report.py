"""labsim report: one self-contained page per run kind, nothing fetched, the same run the same page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from labsim.cli import cli

ROOT = Path(__file__).resolve().parents[3]


def _run(tmp_path, example, *sets):
    out = tmp_path / "run"
    args = ["run", str(ROOT / "examples" / example), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def _report(folder):
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    return (folder / "report.html").read_text()


def _self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "@import" not in page


@pytest.mark.parametrize("example, sets, sections, plots", [
    ("quickstart.yaml", ("workload.total_duration=10", "frameworks_to_test.0.config.record_steps=true"),
     ["Headline figures", "Serving: latency"], 3),
    ("training_small_4gpu.yaml", ("frameworks_to_test.0.config.record_timeline=true",),
     ["Headline figures", "Bottleneck and what to change", "Training: where the iteration goes"], 2),
    ("cluster_tiresias_60jobs.yaml", ("workload.time_scale=0.01", "frameworks_to_test.0.config.record_usage=true"),
     ["Cluster: job completion times"], 3),   # JCT CDF; GPUs busy and queue; the Gantt
    ("sharing_two_chat_servers.yaml", ("workload.total_duration=10", "hardware_profile.sharing.record_timeline=true"),
     ["Serving: latency", "Shared GPU: SMs and bandwidth in use"], 3),
])
def test_a_report_per_kind_of_run(tmp_path, example, sets, sections, plots):
    folder = _run(tmp_path, example, *sets)
    page = _report(folder)
    for heading in sections:
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg") >= plots
    _self_contained(page)
    assert _report(folder) == page  # deterministic


def test_a_folder_without_a_run_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "has no summary.json" in result.output


def test_a_plugin_adds_its_own_section(tmp_path, monkeypatch):
    import labsim_report.command as command

    def jobs_count(run):
        yield "Custom", f"<p>{len(run.table('jobs') or [])} rows of jobs</p>"

    original = command.sections
    monkeypatch.setattr(command, "sections", lambda: [*original(), jobs_count])
    folder = _run(tmp_path, "cluster_tiresias_60jobs.yaml")
    page = _report(folder)
    assert "<h2>Custom</h2><p>360 rows of jobs</p>" in page


def test_labsim_run_report_writes_the_page_with_the_outputs(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(ROOT / "examples" / "cluster_tiresias_60jobs.yaml"),
                                      "--out", str(out), "--report", "--json"])
    assert result.exit_code == 0, result.output
    import json

    json.loads(result.stdout)  # stdout stays the summary alone
    assert "<h2>Cluster: job completion times</h2>" in (out / "report.html").read_text()


def test_a_sweep_page_has_curves_and_each_frameworks_capacity(tmp_path):
    db = tmp_path / "s.sqlite"
    result = CliRunner().invoke(cli, ["sweep", str(ROOT / "examples" / "vllm_vs_trtllm_load_sweep.yaml"),
                                      "--grid", "workload.client_profiles[0].request_rate=4,24",
                                      "--set", "workload.total_duration=30", "--set", "metrics_config.warm_up_duration_s=0",
                                      "--db", str(db), "--workers", "1"])
    assert result.exit_code == 0, result.output
    page_result = CliRunner().invoke(cli, ["report", str(db), "--slo", "TTFT p99 (ms)<=100000"])
    assert page_result.exit_code == 0, page_result.output
    page = (tmp_path / "s.html").read_text()
    assert "<h2>Throughput and latency</h2>" in page and page.count("<svg") == 1
    assert "<h2>Capacity</h2>" in page and "none meets it" not in page
    _self_contained(page)
    bad = CliRunner().invoke(cli, ["report", str(db), "--slo", "fast"])
    assert bad.exit_code == 2 and "--slo 'fast': allowed" in bad.output


def _json_page(tmp_path, name, *command):
    """Run a labsim *command* that writes ``NAME.json``, then ``labsim report`` it: the page."""
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(cli, [str(c) for c in command] + ["--json", str(out)])
    assert result.exit_code == 0, result.output
    page_result = CliRunner().invoke(cli, ["report", str(out)])
    assert page_result.exit_code == 0, page_result.output
    page = (tmp_path / f"{name}.html").read_text()
    _self_contained(page)
    return page


def test_a_search_page_draws_the_pareto_front(tmp_path):
    page = _json_page(tmp_path, "search", "search", ROOT / "examples" / "search_llama8b_chat.yaml",
                      "--slo", "ttft_ms.p99<=1000", "--devices", "H100-SXM,A100-SXM4-80GB",
                      "--set", "workload.total_duration=20", "--precision", "0.3",
                      "--frameworks", "vllm", "--workers", "1")
    assert "<h2>Cost against latency</h2>" in page and page.count("<svg") == 1
    assert "Cheapest meeting the SLOs:</b> vllm on" in page and "Pareto front" in page


def test_a_layout_search_page_shows_the_best_layouts_and_the_budget(tmp_path):
    page = _json_page(tmp_path, "layouts", "scale", ROOT / "examples" / "training_medium_32gpu.yaml",
                      "--gpus", "16", "32", "--search", "--train-tokens", "3e10", "--budget-hours", "24",
                      "--workers", "1", "--set", 'frameworks_to_test=[{"name": "ddp", "type": "ddp"}]')
    assert "<h2>Scaling of the best layouts</h2>" in page and "Smallest cluster meeting 24 h:</b> 32 GPUs" in page


def test_json_that_is_not_a_search_exits_2(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    result = CliRunner().invoke(cli, ["report", str(path)])
    assert result.exit_code == 2 and "not a search result" in result.output
    path.write_text("{broken")
    result = CliRunner().invoke(cli, ["report", str(path)])
    assert result.exit_code == 2 and "not a search result" in result.output


def test_a_serving_report_says_what_priced_the_gpu_and_draws_kv_and_preemptions(tmp_path):
    # Before: the pricing line read a key the summary does not have and printed "()".
    folder = _run(tmp_path, "quickstart.yaml", "workload.total_duration=20",
                  "workload.client_profiles.0.request_rate=40",
                  "frameworks_to_test.0.config.record_steps=true",
                  "frameworks_to_test.0.config.gpu_memory_utilization=0.3",
                  "frameworks_to_test.0.config.max_model_len=16384")
    page = _report(folder)
    assert "device (H100-SXM) priced by profile <code>h100_sxm</code> (catalog)" in page
    assert "()" not in page
    assert "KV cache in use" in page and "preemptions (cumulative)" in page


def test_a_scaling_study_page_draws_throughput_and_efficiency(tmp_path):
    page = _json_page(tmp_path, "scale", "scale", ROOT / "examples" / "training_medium_32gpu.yaml",
                      "--gpus", "8", "32", "128")
    assert "<h2>Throughput and efficiency</h2>" in page and page.count("<svg") == 1
    assert "does not split" in page      # a size a framework cannot use says why


def test_a_sharing_comparison_page_draws_each_mode_against_alone(tmp_path):
    page = _json_page(tmp_path, "modes", "sharing", ROOT / "examples" / "sharing_two_chat_servers.yaml",
                      "--modes", "time_slicing,mig", "--set", "workload.total_duration=10")
    assert "<h2>Each mode against alone</h2>" in page and page.count("<svg") == 1
    assert "<h2>chat-a</h2>" in page and "time_slicing" in page


def test_the_cluster_gantt_draws_every_way_a_run_ends(tmp_path):
    """Each outcome the attempts table records (spot reclaims included) has a colour in the
    Gantt chart; an outcome without one would silently leave its bars out."""
    import labsim
    from labsim_report.sections import OUTCOME_COLORS

    trace = tmp_path / "jobs.csv"
    trace.write_text("job_id,submit_time_s,duration_s,num_gpus\n"
                     + "".join(f"{i},{i * 100},{20000 + 50 * i},{(1, 4, 8, 16)[i % 4]}\n" for i in range(40)))
    cluster = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 8,
               "nodes_per_leaf": 2, "nic": "roce-100", "nics_per_node": 1}
    types = [{"name": "v100", "nodes": 4, "capacity": "reserved", "price_per_gpu_hour": 2.0},
             {"name": "v100", "nodes": 4, "capacity": "spot", "price_per_gpu_hour": 0.9,
              "reclaims_per_node_hour": 0.02, "reclaim_outage_s": 600}]
    result = labsim.run({
        "name": "g", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": cluster},
        "workload": {"type": "jobs", "trace": str(trace)},
        "frameworks_to_test": [{"name": "tiresias", "type": "cluster", "config": {
            "scheduler": {"type": "tiresias"}, "gpu_types": types, "failures": {}}}]})
    outcomes = {r["outcome"] for r in result.table("attempts")}
    assert "reclaimed" in outcomes and len(outcomes) >= 3
    assert outcomes <= set(OUTCOME_COLORS)

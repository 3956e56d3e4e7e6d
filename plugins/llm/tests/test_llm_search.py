"""``labsim search``: capacity by bisection, replicas, cost and the Pareto front."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from labsim.cli import cli
from labsim.errors import UsageError
from labsim_llm.search import Slo, configuration, scaled, search

#: a small chat load on Llama-3.1-8B, quick to simulate
EXPERIMENT = {
    "name": "search-test",
    "simulation": {"max_simulation_time": 300, "random_seed": 3},
    "hardware_profile": {"device": "H100-SXM"},
    "workload": {"type": "client_profiles", "total_duration": 20, "client_profiles": [
        {"profile_name": "chat", "request_rate": 6.0,
         "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 500, "sigma": 300, "is_int": True,
                                       "min": 8, "max": 4000},
         "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 150, "sigma": 80,
                                           "is_int": True, "min": 8, "max": 1000}}]},
    "frameworks_to_test": [{"name": "vllm", "type": "vllm", "config": {"model": "Llama-3.1-8B"}}],
    "metrics_config": {"percentiles_to_calculate": [0.5, 0.99], "warm_up_duration_s": 2},
}
SLOS = [Slo.parse("ttft_ms.p99<=300"), Slo.parse("tpot_ms.p99<=30")]


def _meets(data, device, tp, replicas, factor) -> bool:
    summary = labsim.run(scaled(configuration(data, data["frameworks_to_test"][0], device, tp,
                                              replicas), factor)).summary
    stats = summary["frameworks"]["vllm"]
    return not stats["requests"]["unfinished"] and all(s.met(stats) for s in SLOS)


@pytest.fixture(scope="module")
def result():
    return search(EXPERIMENT, "<test>", None, SLOS, ["H100-SXM", "A100-SXM4-80GB"], [1], [],
                  precision=0.1, workers=1)


def test_capacity_is_the_edge_of_the_slos(result):
    for r in result["configurations"]:
        assert "error" not in r, r
        factor = r["capacity_rps"] / result["target_rps"]
        assert _meets(EXPERIMENT, r["device"], r["tp"], 1, factor)           # holds at capacity
        if r["capacity_bounded"]:
            assert not _meets(EXPERIMENT, r["device"], r["tp"], 1, factor * 1.2)  # breaks past it


def test_replicas_meet_the_target_and_cost_follows(result):
    h100, a100 = (next(r for r in result["configurations"] if r["device"] == d)
                  for d in ("H100-SXM", "A100-SXM4-80GB"))
    assert h100["capacity_rps"] > a100["capacity_rps"]
    for r in (h100, a100):
        assert _meets(EXPERIMENT, r["device"], r["tp"], r["replicas"], 1.0)
        if r["replicas"] > 1:   # one fewer would not be enough by capacity
            assert (r["replicas"] - 1) * r["capacity_rps"] < result["target_rps"] * 1.0001
        price = labsim.device(r["device"]).price_per_hour
        assert r["cost_per_hour"] == pytest.approx(r["replicas"] * r["tp"] * price)
        assert r["cost_per_million_output_tokens"] == pytest.approx(
            r["tp"] * price / (r["output_tokens_per_s_at_capacity"] * 3600) * 1e6)
    cheapest = result["cheapest"]
    assert cheapest["cost_per_hour"] == min(h100["cost_per_hour"], a100["cost_per_hour"])
    assert cheapest["pareto"]


def test_the_pareto_front_has_no_dominated_configuration(result):
    slo = str(SLOS[0])
    front = [r for r in result["configurations"] if r["pareto"]]
    ok = [r for r in result["configurations"] if "replicas" in r]
    for a in front:
        assert not any(b["cost_per_hour"] <= a["cost_per_hour"] and b["at_target"][slo] < a["at_target"][slo]
                       and b is not a for b in ok)


def test_a_model_too_large_for_the_gpu_is_a_row_not_a_crash():
    data = {**EXPERIMENT, "frameworks_to_test": [
        {"name": "big", "type": "vllm", "config": {"model": "Llama-3.1-70B", "max_model_len": 4096}}]}
    out = search(data, "<test>", None, [Slo.parse("tpot_ms.p99<=100")], ["L40S"], [1], [], workers=1)
    (row,) = out["configurations"]
    assert "needs" in row["error"] and "GB" in row["error"] and out["cheapest"] is None


@pytest.mark.parametrize("text", ["ttft<500", "ttft_ms.p99<=fast", "<=3", ""])
def test_bad_slos_are_refused(text):
    with pytest.raises(UsageError, match="--slo"):
        Slo.parse(text)


def test_a_missing_metric_names_what_the_summary_has():
    with pytest.raises(UsageError, match="no 'ttft_ms.p95'.*percentiles_to_calculate"):
        Slo.parse("ttft_ms.p95<=5").value({"ttft_ms": {"p99": 1.0}})


def test_a_trace_workload_cannot_be_scaled():
    data = {**EXPERIMENT, "workload": {"type": "trace", "path": "x.csv"}}
    with pytest.raises(UsageError, match="client_profiles"):
        scaled(data, 2.0)


def test_the_command_prints_the_cheapest_and_writes_json(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(EXPERIMENT))
    out = tmp_path / "search.json"
    result = CliRunner().invoke(cli, ["search", str(path), "--slo", "ttft_ms.p99<=300", "--slo",
                                      "tpot_ms.p99<=30", "--workers", "1", "--precision", "0.2",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "cheapest meeting the SLOs: vllm on" in result.output
    data = json.loads(out.read_text())
    assert data["slos"] == ["ttft_ms.p99<=300", "tpot_ms.p99<=30"] and data["cheapest"]["device"] == "H100-SXM"


@pytest.mark.parametrize("args,message", [
    (["--slo", "tpot<30"], "--slo"),
    (["--slo", "tpot_ms.p99<=30", "--devices", "H900"], "H900"),
    (["--slo", "tpot_ms.p99<=30", "--tp", "1,two"], "--tp"),
    (["--slo", "tpot_ms.p99<=30", "--frameworks", "sglang"], "sglang"),
])
def test_bad_arguments_exit_2_with_one_message(tmp_path, args, message):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(EXPERIMENT))
    result = CliRunner().invoke(cli, ["search", str(path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_knobs_and_pipeline_parallelism_cross_into_the_configurations():
    out = search(EXPERIMENT, "<test>", None, SLOS[:1], [], [1], [], precision=0.3, workers=1,
                 pps=[1, 2], knobs=[("max_num_seqs", [8, 256])])
    rows = out["configurations"]
    assert {(r["pp"], r["knobs"]["max_num_seqs"]) for r in rows} == {(1, 8), (1, 256), (2, 8), (2, 256)}
    by = {(r["pp"], r["knobs"]["max_num_seqs"]): r for r in rows}
    # 8 sequences at a time hold fewer requests than 256: no more capacity
    assert by[(1, 8)]["capacity_rps"] <= by[(1, 256)]["capacity_rps"]
    for r in rows:
        if "replicas" in r:
            assert r["gpus"] == r["replicas"] * r["tp"] * r["pp"]


@pytest.mark.parametrize("knob,message", [("max_num_sequences=8", "Did you mean 'max_num_seqs'"),
                                          ("max_num_seqs", "KEY=V1,V2")])
def test_a_bad_knob_exits_2_before_any_run(tmp_path, knob, message):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(EXPERIMENT))
    result = CliRunner().invoke(cli, ["search", str(path), "--slo", "tpot_ms.p99<=30", "--knob", knob])
    assert result.exit_code == 2 and message in result.output

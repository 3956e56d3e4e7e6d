"""labsim-cluster: job kinds besides training — inference services (replicas on the GPUs their
serving engine needs, for their lifetime) and interactive sessions (GPUs held, busy in bursts)."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import jobs_of, write_trace
from labsim.cli import cli

A100 = {"type": "custom", "device": "A100-SXM4-80GB", "gpus_per_node": 8, "nodes": 2}
HEADER = "job_id,submit_time_s,duration_s,num_gpus,job_type,service,replicas,user"
NOTEBOOK = {"model": "BERT-base", "batch_size": 16, "seq_len": 128,
            "think_time_dist_config": {"type": "Constant", "value": 60},
            "cells_per_burst_dist_config": {"type": "Constant", "value": 5},
            "session_s_dist_config": {"type": "Constant", "value": 3600}}
CHAT = {"engine": "vllm", "config": {"model": "Llama-3.1-8B"}}


def experiment(trace: str, policies=("fifo",), workload=None, **cluster_cfg) -> dict:
    return {
        "name": "kinds", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": dict(A100)},
        "workload": {"type": "jobs", "trace": trace, **(workload or {})},
        "frameworks_to_test": [{"name": p, "type": "cluster",
                                "config": {"scheduler": {"type": p}, **cluster_cfg}} for p in policies],
    }


def write(tmp_path, rows, header=HEADER):
    return write_trace(tmp_path, rows, header)


def test_a_service_holds_its_replicas_gpus_until_the_horizon_and_has_no_jct(tmp_path):
    rows = [("t0", 0, 3600, 1, "", "", "", "a"), ("chat", 100, "", "", "inference", "chat", 3, "b"),
            ("t1", 200, 1800, 2, "", "", "", "a")]
    services = {"chat": {"engine": "vllm", "config": {"model": "Llama-3.1-8B", "tensor_parallel_size": 2}}}
    result = labsim.run(experiment(write(tmp_path, rows), workload={"services": services, "horizon_s": 7200}))
    jobs = jobs_of(result)
    chat = jobs["chat"]
    assert chat["kind"] == "inference" and float(chat["gpus"]) == 6            # 3 replicas × TP 2
    assert float(chat["start_s"]) == 100 and float(chat["end_s"]) == 7200      # to the horizon
    fifo = result.summary["frameworks"]["fifo"]
    assert fifo["jct_h"]["mean"] == pytest.approx((3600 + 1800) / 2 / 3600)   # training jobs only
    inf = fifo["by_kind"]["inference"]
    assert inf["services"] == 1 and inf["gpu_hours_held"] == pytest.approx(6 * 7100 / 3600)
    assert inf["wait_h"]["mean"] == 0
    assert "capacity_per_replica_rps" not in inf["by_service"]["chat"]        # no traffic, no SLO: not priced
    assert result.summary["workload"]["by_kind"] == {"training": 2, "inference": 1}


def test_gpus_per_replica_are_the_fewest_on_which_the_engines_memory_plan_holds_the_model(tmp_path):
    from labsim_llm.models import builtin_models

    rows = [("small", 0, 600, "", "inference", "small", 1, "a"), ("big", 0, 600, "", "inference", "big", 2, "a")]
    services = {"small": CHAT, "big": {"engine": "vllm", "config": {"model": "Llama-3.1-70B"}}}
    result = labsim.run(experiment(write(tmp_path, rows), workload={"services": services}))
    per = {k: v["gpus_per_replica"] for k, v in result.summary["workload"]["services"].items()}
    assert per["small"] == 1
    # 70B in bf16 is ~141 GB of weights: not on one 80 GB GPU, so a replica needs TP ≥ 2
    weights = builtin_models()["Llama-3.1-70B"].weight_bytes("bf16", 1, 1)
    assert weights > 80e9 and per["big"] in (2, 4)
    assert float(jobs_of(result)["big"]["gpus"]) == 2 * per["big"]
    # past a node, pipeline stages of a node each: Llama-3.1-405B (812 GB) as TP 8 × PP 2
    huge = {"huge": {"engine": "vllm", "config": {"model": "Llama-3.1-405B"}}}
    rows405 = [("h", 0, 600, "", "inference", "huge", 1, "a")]
    summary = labsim.run(experiment(write(tmp_path, rows405), workload={"services": huge})).summary
    assert summary["workload"]["services"]["huge"]["gpus_per_replica"] == 16
    # one fewer power of two does not hold it: the engine refuses that TP
    tight = {"big": {"engine": "vllm", "config": {"model": "Llama-3.1-70B",
                                                  "tensor_parallel_size": per["big"] // 2}}}
    exp = tmp_path / "tight.json"
    exp.write_text(json.dumps(experiment(write(tmp_path, rows[1:]), workload={"services": tight})))
    bad = CliRunner().invoke(cli, ["run", str(exp), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2, bad.output


def test_a_row_naming_a_model_is_that_model_served_by_vllm(tmp_path):
    header = "job_id,submit_time_s,duration_s,num_gpus,job_type,model,replicas"
    path = tmp_path / "jobs.csv"
    path.write_text(header + "\nm,0,600,,inference,Llama-3.1-70B,2\n")
    result = labsim.run(experiment(str(path)))
    service = result.summary["workload"]["services"]["Llama-3.1-70B"]
    assert service["engine"] == "vllm" and service["gpus_per_replica"] > 1
    assert float(jobs_of(result)["m"]["gpus"]) == 2 * service["gpus_per_replica"]


def test_a_services_capacity_and_cost_per_million_tokens_are_labsim_searchs(tmp_path):
    from labsim_llm.search import Slo, search

    traffic = {"request_rate": 4.0,
               "prompt_tokens_dist_config": {"type": "Constant", "value": 500},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 200}}
    slo = ["ttft_ms.p99<=1000", "tpot_ms.p99<=40"]
    services = {"chat": {**CHAT, "traffic": traffic, "slo": slo, "traffic_duration_s": 30}}
    rows = [("chat", 0, 3600, "", "inference", "chat", 2, "a")]
    result = labsim.run(experiment(write(tmp_path, rows), workload={"services": services}))
    row = result.summary["frameworks"]["fifo"]["by_kind"]["inference"]["by_service"]["chat"]
    data = {"name": "s", "simulation": {"random_seed": 0}, "hardware_profile": {"device": "A100-SXM4-80GB"},
            "workload": {"type": "client_profiles", "total_duration": 30,
                         "client_profiles": [{"profile_name": "chat", **traffic}]},
            "frameworks_to_test": [{"name": "chat", "type": "vllm", "config": {"model": "Llama-3.1-8B"}}],
            "metrics_config": {"percentiles_to_calculate": [0.5, 0.9, 0.95, 0.99]}}
    found = search(data, "s", tmp_path, [Slo.parse(s) for s in slo], None, None, None, workers=1)
    ref = found["configurations"][0]
    assert row["capacity_per_replica_rps"] == pytest.approx(ref["capacity_rps"])
    assert row["output_tokens_per_s_per_replica"] == pytest.approx(ref["output_tokens_per_s_at_capacity"])
    price = result.summary["frameworks"]["fifo"]["cost"]["usd_per_gpu_hour"]
    assert price == pytest.approx(ref["price_per_gpu_hour"])
    assert row["usd_per_million_output_tokens_at_capacity"] == pytest.approx(ref["cost_per_million_output_tokens"])


def test_a_session_holds_its_gpu_busy_only_in_its_bursts(tmp_path):
    from labsim_sharing.notebook import price_cell
    from labsim_training.job import resolve_model

    rows = [("nb", 0, "", "", "interactive", "", "", "c"), ("t", 0, 3600, 1, "", "", "", "a")]
    result = labsim.run(experiment(write(tmp_path, rows), workload={"interactive": NOTEBOOK}))
    cell, _, _ = price_cell(resolve_model(None, "BERT-base"), labsim.device("A100-SXM4-80GB"), NOTEBOOK)
    # think 60 s, 5 cells, ...: a burst starts at 60·k + 5·cell·(k − 1) < 3600
    bursts = max(k for k in range(1, 100) if 60 * k + 5 * cell * (k - 1) < 3600)
    nb = jobs_of(result)["nb"]
    assert nb["kind"] == "interactive" and float(nb["end_s"]) - float(nb["start_s"]) == 3600
    assert float(nb["busy_gpu_s"]) == pytest.approx(bursts * 5 * cell, rel=1e-6)
    fifo = result.summary["frameworks"]["fifo"]
    inter = fifo["by_kind"]["interactive"]
    assert inter["gpu_hours_allocated"] == pytest.approx(1.0)
    assert inter["gpu_hours_busy"] == pytest.approx(bursts * 5 * cell / 3600, rel=1e-6)
    assert fifo["gpu_hours"]["allocated"] == pytest.approx(2.0)                 # allocated-but-idle shows
    assert fifo["gpu_hours"]["busy"] == pytest.approx(1.0 + inter["gpu_hours_busy"])
    assert fifo["gpu_utilisation"] < fifo["gpu_allocation"]
    assert fifo["jct_h"]["mean"] == pytest.approx(1.0)                          # the training job's only


def test_preemptive_policies_do_not_preempt_a_running_service_or_session(tmp_path):
    # 16 GPUs: a service and a session take 8 each, then a short training job arrives under
    # tiresias, which would preempt a job of 8 GPUs that has run longest
    rows = [("chat", 0, 3600, "", "inference", "chat", 8, "a"), ("nb", 0, 3600, 8, "interactive", "", "", "b"),
            ("t", 600, 600, 8, "", "", "", "c")]
    result = labsim.run(experiment(write(tmp_path, rows), ("tiresias", "srtf"),
                                   workload={"services": {"chat": CHAT}, "interactive": NOTEBOOK}))
    for policy in ("tiresias", "srtf"):
        runs = [a for a in result.table("attempts") if a["policy"] == policy]
        assert [a["outcome"] for a in runs if a["job_id"] in ("chat", "nb")] == ["completed", "completed"]
        jobs = jobs_of(result, policy)
        assert float(jobs["t"]["start_s"]) == 3600                                  # it waited


def test_the_generator_draws_kinds_by_weight_and_keeps_training_only_traces_as_they_were(tmp_path):
    gen = {"jobs": 60, "rate_per_hour": 30, "num_gpus": {"1": 1}}
    mixed = {**gen, "kinds": {"training": 0.5, "inference": 0.25, "interactive": 0.25},
             "replicas": {"1": 0.5, "2": 0.5}, "service_duration_s_dist_config": {"type": "Constant", "value": 1800}}

    def run(generate, **extra):
        exp = experiment("x", workload={"services": {"chat": CHAT}, "interactive": NOTEBOOK, **extra})
        del exp["workload"]["trace"]
        exp["workload"]["generate"] = generate
        return labsim.run(exp)

    plain, before = run(gen), run({**gen, "kinds": {"training": 1}})
    assert plain.table("jobs") == before.table("jobs")
    result = run(mixed)
    kinds = result.summary["workload"]["by_kind"]
    assert sum(kinds.values()) == 60 and set(kinds) == {"training", "inference", "interactive"}
    jobs = jobs_of(result)
    services = [r for r in jobs.values() if r["kind"] == "inference"]
    assert {float(r["gpus"]) for r in services} == {1.0, 2.0}
    assert {float(r["duration_s"]) for r in services} == {1800.0}
    assert {float(r["duration_s"]) for r in jobs.values() if r["kind"] == "interactive"} == {3600.0}


@pytest.mark.parametrize("rows, workload, message", [
    ([("s", 0, 60, "", "inference", "", "", "a")], {}, "column service: an inference job names its service"),
    ([("s", 0, 60, "", "inference", "web", "", "a")], {"services": {"chat": CHAT}},
     "service 'web' is not in workload.services nor a model; services: chat"),
    ([("n", 0, 60, "", "interactive", "", "", "a")], {}, "an interactive job needs workload.interactive"),
    ([("s", 0, 60, "", "inference", "chat", "0", "a")], {"services": {"chat": CHAT}},
     "line 2, column replicas: '0'; allowed: an integer ≥ 1"),
    ([("s", 500, "", "", "inference", "chat", 1, "a")], {"services": {"chat": CHAT}, "horizon_s": 100},
     "not before the horizon (100 s); give duration_s or workload.horizon_s"),
    ([("s", 0, 60, 3, "inference", "chat", 2, "a")], {"services": {"chat": CHAT}},
     "column num_gpus: 3; service 'chat' runs 2 replica(s) of 1 GPU(s)"),
])
def test_bad_service_and_session_rows_exit_2_naming_the_field(tmp_path, rows, workload, message):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(experiment(write(tmp_path, rows), workload=workload)))
    result = CliRunner().invoke(cli, ["run", str(exp), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_example_runs_end_to_end_with_every_kind_under_every_mode(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "cluster_services_and_notebooks.yaml"
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(example), "--out", str(out),
                                      "--set", "workload.generate.jobs=60"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["workload"]["by_kind"]) == {"training", "inference", "interactive"}
    rows = list(csv_rows(out / "jobs.csv"))
    for name, fw in summary["frameworks"].items():
        assert fw["jobs"]["finished"] == 60
        kinds = fw["by_kind"]
        assert kinds["interactive"]["gpu_hours_busy"] < kinds["interactive"]["gpu_hours_allocated"]
        assert kinds["inference"]["by_service"]["chat"]["usd_per_million_output_tokens_at_capacity"] > 0
        sessions = [r for r in rows if r["policy"] == name and r["kind"] == "interactive"]
        # a quarter of a GPU, a 2g.20gb instance (2 of 7 compute slices), or a whole one
        assert {round(float(r["gpus"]), 4) for r in sessions} == {
            "exclusive": {1.0}, "time_slicing": {0.25}, "mps": {0.25}, "mig": {round(2 / 7, 4)}}[name]
    fractional = [r for r in rows if r["policy"] == "mps" and r["kind"] == "training" and float(r["gpus"]) < 1]
    assert fractional                                                  # a third of the one-GPU jobs


def csv_rows(path):
    import csv

    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)


def test_a_sessions_bursts_drawn_a_block_at_a_time_are_the_notebooks_loop():
    import numpy as np
    from labsim_cluster.kinds import Sessions

    class Stream:
        """Values of a fixed sequence, however many are asked at a time."""

        def __init__(self, values):
            self.values, self.at = values, 0

        def sample_n(self, n):
            out = self.values[self.at:self.at + n]
            self.at += n
            return out

    rng = np.random.default_rng(3)
    think, cells = rng.exponential(30.0, 100000), rng.lognormal(1.5, 0.8, 100000)
    sessions = Sessions.__new__(Sessions)
    sessions._cells = {1: (0.7, 0.5)}
    for length in (50.0, 3600.0, 7200.0, 86400.0):
        sessions.think, sessions.cells = Stream(think), Stream(cells)
        got = sessions.busy_s(length, 1)
        t = busy = 0.0
        i = 0
        while True:                                   # the notebook tenant's loop, one draw at a time
            t += max(0.0, think[i])
            if t >= length:
                break
            run = min(max(1, int(round(cells[i]))) * 0.7, length - t)
            busy += run
            t += run
            i += 1
        assert got == pytest.approx(busy, rel=1e-12)

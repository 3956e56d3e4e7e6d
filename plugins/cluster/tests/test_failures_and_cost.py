"""labsim-cluster: failure kinds (GPU faults, node outages, partitions, OOM, image pulls, spot
reclaims), their incidents in the events table, and cost by capacity, user and project."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import write_trace
from labsim.cli import cli

# 8 nodes of 4 GPUs, two nodes per leaf
CLUSTER = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 8, "nodes_per_leaf": 2,
           "nic": "roce-100", "nics_per_node": 1}
QUIET = {"xid_per_gpu_hour": 0, "software_per_gpu_hour": 0, "node_mtbf_h": 1e12, "partitions_per_gpu_hour": 0}


def experiment(trace: str, seed: int = 0, **cluster_cfg) -> dict:
    return {
        "name": "f", "simulation": {"max_simulation_time": 1e9, "random_seed": seed},
        "hardware_profile": {"topology": dict(CLUSTER)},
        "workload": {"type": "jobs", "trace": trace},
        "frameworks_to_test": [{"name": "fifo", "type": "cluster",
                                "config": {"scheduler": {"type": "fifo"}, **cluster_cfg}}],
    }


def write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user,group"):
    return write_trace(tmp_path, rows, header)


def many_jobs(tmp_path, n=40):
    return write(tmp_path, [(i, i * 100, 20000 + 50 * i, (1, 4, 8, 16)[i % 4], f"u{i % 3}", f"g{i % 2}")
                            for i in range(n)])


def nodes_of(attempt) -> set[int]:
    return {int(p.split(":")[0]) for p in attempt["nodes"].split()}


def test_every_failure_kind_is_counted_in_attempts_and_the_summary(tmp_path):
    failures = {"xid_per_gpu_hour": 0.002, "software_per_gpu_hour": 0.001, "node_mtbf_h": 100,
                "node_repair_h": 1, "partitions_per_gpu_hour": 0.002, "image_pull_failure_probability": 0.05,
                "oom_probability": 0.03, "max_retries": 20, "checkpoint_interval_s": 1800}
    result = labsim.run(experiment(many_jobs(tmp_path), failures=failures))
    s = result.summary["frameworks"]["fifo"]
    attempts = result.table("attempts")
    counted = {}
    for a in attempts:
        if a["failure"]:
            counted[a["failure"]] = counted.get(a["failure"], 0) + 1
            assert a["outcome"] == "interrupted"
        else:
            assert a["outcome"] == "completed"
    by_kind = s["failures"]["by_kind"]
    assert {k: v for k, v in by_kind.items() if v} == counted
    assert {"xid", "software", "node", "partition", "image_pull", "oom"} <= set(counted)
    assert s["jobs"]["interruptions"] == sum(counted.values())
    lost = s["failures"]["gpu_hours_lost_by_kind"]
    assert sum(lost.values()) == pytest.approx(s["gpu_hours_lost_to_failures"])
    assert lost["image_pull"] == 0 and lost["xid"] > 0   # a failed pull did no work to lose
    for a in attempts:
        if a["failure"] == "image_pull":
            assert float(a["end_s"]) - float(a["start_s"]) == pytest.approx(120.0)  # the kubelet's timeout
            assert float(a["work_s"]) == 0
        if a["failure"] == "oom":
            assert float(a["end_s"]) == pytest.approx(float(a["start_s"]))  # at once: memory unknown
    # same experiment, same seed: the same failures
    again = labsim.run(experiment(many_jobs(tmp_path), failures=failures))
    assert again.summary == result.summary


def test_a_node_failure_ends_every_job_on_that_node_and_the_node_is_down_for_its_repair(tmp_path):
    rows = [(i, 0, 40000, 1, "a", "") for i in range(32)]   # 32 one-GPU jobs fill all 8 nodes
    result = labsim.run(experiment(write(tmp_path, rows),
                                   failures={**QUIET, "node_mtbf_h": 20, "node_repair_h": 2, "max_retries": 50}))
    events = [e for e in result.table("events") if e["kind"] == "node_failure"]
    assert events
    attempts = result.table("attempts")
    for e in events:
        node, at = int(e["name"].split()[1]), float(e["time_s"])
        assert e["state"] == "down" and float(e["duration_s"]) == 7200
        ended = [a for a in attempts if a["failure"] == "node" and float(a["end_s"]) == at]
        running = [a for a in attempts if node in nodes_of(a) and float(a["start_s"]) < at < float(a["end_s"])]
        assert not running                                   # nobody outlived the failure on that node
        assert int(float(e["value"])) == len(ended) and all(nodes_of(a) == {node} for a in ended)
        # nothing starts on the node while it is being repaired
        assert not [a for a in attempts if node in nodes_of(a) and at <= float(a["start_s"]) < at + 7200]
    s = result.summary["frameworks"]["fifo"]
    assert s["failures"]["by_kind"]["node"] == sum(int(float(e["value"])) for e in events)
    assert s["failures"]["node_hours_down"] > 0


def test_a_partition_fails_only_the_multi_node_jobs_under_its_leaf(tmp_path):
    # per leaf: one 8-GPU job across its two nodes ... and one-GPU jobs elsewhere
    rows = [(0, 0, 50000, 8, "a", ""), (1, 0, 50000, 8, "a", "")] + [(i, 0, 50000, 1, "b", "") for i in range(2, 18)]
    result = labsim.run(experiment(write(tmp_path, rows),
                                   failures={**QUIET, "partitions_per_gpu_hour": 0.01, "max_retries": 50}))
    hit = [a for a in result.table("attempts") if a["failure"] == "partition"]
    assert hit and all(int(a["gpus"]) == 8 and len(nodes_of(a)) == 2 for a in hit)
    events = [e for e in result.table("events") if e["kind"] == "partition"]
    assert sum(int(float(e["value"])) for e in events) == len(hit)


def test_no_multi_node_job_starts_on_a_partitioned_leaf_while_the_partition_lasts(tmp_path):
    # 8-GPU jobs (two nodes, one leaf) and one-GPU jobs arriving all along; partitions of an hour
    rows = [(i, i * 600, 5000, 8 if i % 2 else 1, "a", "") for i in range(120)]
    result = labsim.run(experiment(write(tmp_path, rows), failures={
        **QUIET, "partitions_per_gpu_hour": 0.002, "partition_duration_s": 3600, "max_retries": 50}))
    events = [e for e in result.table("events") if e["kind"] == "partition"]
    assert len(events) >= 3
    attempts = result.table("attempts")
    single_inside = 0
    for e in events:
        leaf, at = int(e["name"].split()[1]), float(e["time_s"])
        assert float(e["duration_s"]) == 3600
        during = [a for a in attempts if at <= float(a["start_s"]) < at + 3600
                  and any(n // 2 == leaf for n in nodes_of(a))]
        assert not [a for a in during if len(nodes_of(a)) > 1]
        single_inside += len(during)
    assert single_inside > 0       # one-node jobs still run there: their traffic stays on the node
    assert all(r["status"] == "completed" for r in result.table("jobs"))


def test_a_stalling_partition_delays_its_jobs_without_failing_them(tmp_path):
    rows = [(0, 0, 50000, 8, "a", "")]
    quiet = labsim.run(experiment(write(tmp_path, rows), failures=QUIET))
    result = labsim.run(experiment(write(tmp_path, rows), failures={
        **QUIET, "partitions_per_gpu_hour": 0.01, "partition_effect": "stall", "partition_duration_s": 900}))
    events = [e for e in result.table("events") if e["kind"] == "partition" and float(e["value"]) > 0]
    assert events and not any(a["failure"] for a in result.table("attempts"))
    end = float(result.table("jobs")[0]["end_s"])
    base = float(quiet.table("jobs")[0]["end_s"])
    assert base < end <= base + 900 * len(events) + 1e-6
    with pytest.raises(labsim.LabsimError, match="partition_duration_s"):
        labsim.run(experiment(write(tmp_path, rows), failures={"partition_effect": "stall"}))


def test_a_job_whose_predicted_memory_does_not_fit_runs_out_of_memory_after_one_iteration(tmp_path):
    from labsim_training import estimate

    path = write(tmp_path, [(0, 0, "", 1, "a", "Llama-2-7B", 100, 1024, 16),
                            (1, 0, "", 8, "b", "Llama-2-7B", 100, 1024, 16)],
                 header="job_id,submit_time_s,duration_s,num_gpus,user,model,steps,seq_len,global_batch_size")
    exp = experiment(path, failures={**QUIET, "max_retries": 2, "retry_backoff_s": 10})
    exp["hardware_profile"]["topology"] = {"type": "dgx-a100", "nodes": 2}
    result = labsim.run(exp)
    one = estimate("Llama-2-7B", framework="fsdp", device="A100-SXM4-80GB", topology={"type": "dgx-a100", "nodes": 2},
                   seq_len=1024, global_batch_size=16, gpus=1, check_memory=False)
    assert one["memory_per_gpu_gib"]["total"] > one["memory_capacity_gib"]   # 7B on one 80 GB GPU: no
    jobs = {r["job_id"]: r for r in result.table("jobs")}
    assert jobs["0"]["status"] == "failed" and int(jobs["0"]["failures"]) == 3
    assert jobs["1"]["status"] == "completed"
    runs = [a for a in result.table("attempts") if a["job_id"] == "0"]
    assert [a["failure"] for a in runs] == ["oom"] * 3
    for a in runs:
        assert float(a["end_s"]) - float(a["start_s"]) == pytest.approx(one["iteration_time_s"])
    # no failures block: the OOM still happens (it is the model's memory, not chance); default retries
    plain = dict(exp)
    plain["frameworks_to_test"] = [{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}}]
    s = labsim.run(plain).summary["frameworks"]["fifo"]
    assert s["jobs"]["failed"] == 1 and s["failures"]["by_kind"]["oom"] == 4


SPOT_TYPES = [{"name": "v100", "nodes": 4, "capacity": "reserved", "price_per_gpu_hour": 2.0},
              {"name": "v100", "nodes": 4, "capacity": "spot", "price_per_gpu_hour": 0.9,
               "reclaims_per_node_hour": 0.02, "reclaim_outage_s": 600}]


def test_spot_reclaims_requeue_at_once_losing_work_since_the_checkpoint(tmp_path):
    result = labsim.run(experiment(many_jobs(tmp_path), gpu_types=SPOT_TYPES))
    s = result.summary["frameworks"]["fifo"]
    attempts = result.table("attempts")
    reclaimed = [a for a in attempts if a["outcome"] == "reclaimed"]
    assert reclaimed and all(a["failure"] == "spot" and a["gpu_type"] == "v100" for a in reclaimed)
    assert s["jobs"]["reclaims"] == len(reclaimed) and s["jobs"]["failed"] == 0
    assert s["jobs"]["interruptions"] == 0  # no retry budget spent
    jobs = {r["job_id"]: r for r in result.table("jobs")}
    for a in reclaimed:
        later = [b for b in attempts if b["job_id"] == a["job_id"] and int(b["attempt"]) == int(a["attempt"]) + 1]
        assert later and float(later[0]["start_s"]) >= float(a["end_s"])
        assert int(jobs[a["job_id"]]["failures"]) == 0
    assert sum(float(a["lost_gpu_s"]) for a in reclaimed) / 3600 == pytest.approx(
        s["failures"]["gpu_hours_lost_by_kind"]["spot"])
    assert s["failures"]["incidents"]["spot_reclaim"] >= len({(a["end_s"]) for a in reclaimed})
    # cost: each capacity at its price, for all its GPUs over the makespan
    makespan_h = s["makespan_h"]
    assert s["cost"]["by_capacity"]["reserved"] == pytest.approx(16 * 2.0 * makespan_h)
    assert s["cost"]["by_capacity"]["spot"] == pytest.approx(16 * 0.9 * makespan_h)
    assert set(s["gpu_types"]) == {"v100 (reserved)", "v100 (spot)"}


def test_cost_per_user_and_project_adds_up_to_the_busy_cost(tmp_path):
    result = labsim.run(experiment(many_jobs(tmp_path), gpu_types=SPOT_TYPES))
    cost = result.summary["frameworks"]["fifo"]["cost"]
    assert sum(cost["by_user"].values()) == pytest.approx(cost["usd_busy"])
    assert sum(cost["by_group"].values()) == pytest.approx(cost["usd_busy"])
    assert cost["usd_busy"] + cost["usd_idle"] == pytest.approx(cost["usd"])
    jobs = result.table("jobs")
    for user, usd in cost["by_user"].items():
        assert sum(float(j["cost_usd"]) for j in jobs if j["user"] == user) == pytest.approx(usd)
    attempts = result.table("attempts")
    assert sum(float(a["cost_usd"]) for a in attempts) == pytest.approx(cost["usd_busy"])


def test_labsim_jobs_totals_cost_by_user_and_filters_attempts_by_failure(tmp_path):
    exp = experiment(many_jobs(tmp_path), gpu_types=SPOT_TYPES,
                     failures={"xid_per_gpu_hour": 0.002, "max_retries": 20})
    exp["metrics_config"] = {"sinks": ["summary_json", "csv", "sqlite"]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    out = tmp_path / "run"
    assert CliRunner().invoke(cli, ["run", str(path), "--out", str(out)]).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())["frameworks"]["fifo"]
    by = CliRunner().invoke(cli, ["jobs", str(out), "--by", "user", "--format", "json"])
    assert by.exit_code == 0, by.output
    rows = json.loads(by.output)
    assert {r["user"]: r["cost_usd"] for r in rows} == pytest.approx(summary["cost"]["by_user"])
    assert sum(r["jobs"] for r in rows) == 40
    xid = CliRunner().invoke(cli, ["jobs", str(out), "--attempts", "--failure", "xid", "--format", "json"])
    assert xid.exit_code == 0 and len(json.loads(xid.output)) == summary["failures"]["by_kind"]["xid"] > 0
    bad = CliRunner().invoke(cli, ["jobs", str(out), "--failure", "xid"])
    assert bad.exit_code == 2 and "--attempts" in bad.output


@pytest.mark.parametrize("types, message", [
    ([{"name": "v100", "nodes": 8, "capacity": "spot"}], "reclaims_per_node_hour"),
    ([{"name": "v100", "nodes": 4}, {"name": "v100", "nodes": 4}], "twice with the same capacity"),
])
def test_bad_capacity_settings_exit_2(tmp_path, types, message):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(experiment(many_jobs(tmp_path, 4), gpu_types=types)))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and message in result.output


def test_default_rates_come_from_the_llama3_table():
    from labsim_cluster import failures as f

    assert f.XID_PER_GPU_HOUR + f.SOFTWARE_PER_GPU_HOUR + f.PARTITIONS_PER_GPU_HOUR + 1 / (8 * f.NODE_MTBF_H) \
        == pytest.approx(419 / (54 * 24 * 16384))   # 8 GPUs per Llama 3 server


def test_policies_side_by_side_meet_the_same_incidents(tmp_path):
    exp = experiment(many_jobs(tmp_path), gpu_types=SPOT_TYPES,
                     failures={**QUIET, "node_mtbf_h": 100, "partitions_per_gpu_hour": 0.002, "max_retries": 20})
    exp["frameworks_to_test"].append({"name": "tiresias", "type": "cluster",
                                      "config": {**exp["frameworks_to_test"][0]["config"],
                                                 "scheduler": {"type": "tiresias"}}})
    result = labsim.run(exp)
    events = result.table("events")
    # the policies end at different times: compare the incidents while both still ran jobs
    end = min(max(float(j["end_s"]) for j in result.table("jobs") if j["policy"] == p) for p in ("fifo", "tiresias"))

    def incidents(policy):
        return sorted((float(e["time_s"]), e["kind"], e["name"]) for e in events
                      if e["policy"] == policy and float(e["time_s"]) <= end)

    assert len(incidents("fifo")) > 3 and incidents("fifo") == incidents("tiresias")


def test_retries_back_off_doubling_up_to_the_cap(tmp_path):
    rows = [(0, 0, 200000, 4, "a", "")]
    result = labsim.run(experiment(write(tmp_path, rows), failures={
        **QUIET, "xid_per_gpu_hour": 0.05, "max_retries": 1000, "retry_backoff_s": 60, "checkpoint_interval_s": 600}))
    runs = sorted(result.table("attempts"), key=lambda a: int(a["attempt"]))
    gaps = [float(b["start_s"]) - float(a["end_s"]) for a, b in zip(runs, runs[1:])]
    assert len(gaps) > 8 and result.table("jobs")[0]["status"] == "completed"
    assert gaps[:4] == pytest.approx([60, 120, 240, 360]) and set(gaps[4:]) == {360.0}

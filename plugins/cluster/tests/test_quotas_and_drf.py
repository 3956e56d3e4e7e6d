"""labsim-cluster: quotas per user and project, Dominant Resource Fairness over GPUs, CPUs and
memory, and gang scheduling (a job runs on all its GPUs at once or not at all)."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from labsim.cli import cli

CLUSTER = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 4,
           "nic": "roce-100", "nics_per_node": 1}


def experiment(trace: str, policies=("fifo",), **cluster_cfg) -> dict:
    return {
        "name": "q", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": dict(CLUSTER)},
        "workload": {"type": "jobs", "trace": trace},
        "frameworks_to_test": [{"name": p, "type": "cluster",
                                "config": {"scheduler": {"type": p}, **cluster_cfg}} for p in policies],
    }


def write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user,group"):
    path = tmp_path / "jobs.csv"
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def peak_gpus(attempts, policy, pick) -> int:
    """The most GPUs the attempts chosen by *pick* held at once."""
    edges = []
    for a in attempts:
        if a["policy"] == policy and pick(a):
            edges += [(float(a["start_s"]), 1, int(a["gpus"])), (float(a["end_s"]), 0, -int(a["gpus"]))]
    held = peak = 0
    for _, _, g in sorted(edges):
        held += g
        peak = max(peak, held)
    return peak


def test_a_user_over_quota_waits_without_holding_back_other_users(tmp_path):
    rows = [(i, 0, 1000, 4, "alice", "ml") for i in range(4)] + [(9, 1, 1000, 4, "bob", "ml")]
    result = labsim.run(experiment(write(tmp_path, rows), ("fifo", "srtf", "tiresias"),
                                   quotas={"user": {"alice": 8}}))
    for policy in ("fifo", "srtf", "tiresias"):
        jobs = {r["job_id"]: r for r in result.table("jobs") if r["policy"] == policy}
        assert float(jobs["9"]["start_s"]) == pytest.approx(1.0)          # bob is not behind alice's third job
        owner = {j: r["user"] for j, r in jobs.items()}
        assert peak_gpus(result.table("attempts"), policy, lambda a, o=owner: o[a["job_id"]] == "alice") <= 8
        assert all(r["status"] == "completed" for r in jobs.values())
    fifo = {r["job_id"]: r for r in result.table("jobs") if r["policy"] == "fifo"}
    assert sorted(float(fifo[str(i)]["start_s"]) for i in range(4)) == [0, 0, 1000, 1000]


def test_a_project_quota_and_the_star_for_everyone_else(tmp_path):
    rows = [(i, 0, 500, 4, f"u{i}", "vision" if i < 3 else f"p{i}") for i in range(6)]
    result = labsim.run(experiment(write(tmp_path, rows), quotas={"group": {"vision": 4, "*": 4}}))
    jobs = {r["job_id"]: r for r in result.table("jobs")}
    assert sorted(float(jobs[str(i)]["start_s"]) for i in range(3)) == [0, 500, 1000]   # vision: one at a time
    assert all(float(jobs[str(i)]["start_s"]) == 0 for i in (3, 4, 5))


def test_a_job_larger_than_its_quota_exits_2(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(experiment(write(tmp_path, [(0, 0, 100, 8, "alice", "")]),
                                          quotas={"user": {"alice": 4}})))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and "quota of its user 'alice' is 4" in result.output


def test_drf_equalises_dominant_shares_where_fifo_lets_one_user_take_the_cpus(tmp_path):
    # 16 GPUs, 128 CPUs: alice's jobs are CPU-heavy (1 GPU, 32 CPUs: a quarter of the CPUs), bob's
    # GPU-heavy (4 GPUs: a quarter of the GPUs, 1 CPU); alice's arrive first, all queue behind a
    # job that holds the whole cluster until 100 s
    rows = ([(99, 0, 100, 16, "x", "", 0)] + [(i, 1, 1000, 1, "alice", "", 32) for i in range(6)]
            + [(10 + i, 2, 1000, 4, "bob", "", 1) for i in range(6)])
    path = write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user,group,cpu")
    result = labsim.run(experiment(path, ("fifo", "drf"), node_cpus=32))
    attempts = result.table("attempts")

    def running_at(policy, t):
        users = {r["job_id"]: r["user"] for r in result.table("jobs") if r["policy"] == policy}
        return sorted(users[a["job_id"]] for a in attempts
                      if a["policy"] == policy and float(a["start_s"]) <= t < float(a["end_s"]))

    assert running_at("fifo", 500) == ["alice"] * 4                  # the CPUs are gone; bob waits
    assert running_at("drf", 500) == ["alice"] * 3 + ["bob"] * 3     # dominant shares 0.75 each
    # the CPUs bind: no moment holds more than the cluster's 128
    for policy in ("fifo", "drf"):
        cpus = {r["job_id"]: {"alice": 32, "bob": 1, "x": 0}[r["user"]] for r in result.table("jobs")}
        for t in (0.5, 1.5, 500, 1500, 2500):
            assert sum(cpus[a["job_id"]] for a in attempts if a["policy"] == policy
                       and float(a["start_s"]) <= t < float(a["end_s"])) <= 128


def test_drf_over_gpus_alone_when_the_jobs_give_no_cpus(tmp_path):
    rows = [(i, 0, 1000, 4, "heavy", "") for i in range(8)] + [(20, 1, 1000, 1, "light", "")]
    result = labsim.run(experiment(write(tmp_path, rows), ("fifo", "drf")))
    jobs = {(r["policy"], r["job_id"]): r for r in result.table("jobs")}
    # FIFO: the light user's job waits behind the heavy user's queue; DRF starts it at the first gap
    assert float(jobs[("drf", "20")]["start_s"]) == pytest.approx(1000.0)
    assert float(jobs[("fifo", "20")]["start_s"]) == pytest.approx(1000.0 * 2)


def test_gang_scheduling_every_run_holds_all_its_gpus(tmp_path):
    rows = [(i, i * 7, 300 + 40 * (i % 5), (1, 2, 3, 4, 6, 8, 16)[i % 7], f"u{i % 3}", "") for i in range(60)]
    result = labsim.run(experiment(write(tmp_path, rows), ("fifo", "sjf", "easy_backfill", "tiresias", "drf")))
    for a in result.table("attempts"):
        assert sum(int(p.split(":")[1]) for p in a["nodes"].split()) == int(a["gpus"])
    for policy in ("fifo", "sjf", "easy_backfill", "tiresias", "drf"):
        assert peak_gpus(result.table("attempts"), policy, lambda a: True) <= 16

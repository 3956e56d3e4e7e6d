"""labsim-cluster: quotas per user and project, Dominant Resource Fairness over GPUs, CPUs and
memory, and gang scheduling (a job runs on all its GPUs at once or not at all)."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import write_trace
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
    return write_trace(tmp_path, rows, header)


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
    # an alice job holds all 32 CPUs of its node (CPUs are per node), a bob job all 4 GPUs of
    # its own: DRF runs two of each, dominant shares 0.5 each
    assert running_at("drf", 500) == ["alice"] * 2 + ["bob"] * 2
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


def cpus_per_node(result, policy, cpus, t) -> dict[int, float]:
    """CPUs each node's jobs hold at *t*: a job's CPUs split evenly over its GPUs."""
    out: dict[int, float] = {}
    for a in result.table("attempts"):
        if a["policy"] == policy and float(a["start_s"]) <= t < float(a["end_s"]):
            for part in a["nodes"].split():
                n, g = map(int, part.split(":"))
                out[n] = out.get(n, 0.0) + cpus[a["job_id"]] * g / int(a["gpus"])
    return out


def test_cpus_and_memory_are_held_per_node_at_placement(tmp_path):
    # 4 nodes of 4 GPUs and 32 CPUs / 256 GiB: a one-GPU job asking 32 CPUs takes a node's CPUs
    # (its other GPUs cannot take a CPU-hungry job), and a 4-GPU job asking 16 CPUs spreads
    # over no node that lacks its 4 CPUs per GPU
    rows = ([(i, 0, 1000, 1, "a", "", 32, 8) for i in range(4)]
            + [(10, 1, 1000, 1, "b", "", 1, 200), (11, 2, 1000, 4, "c", "", 16, 16)])
    path = write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user,group,cpu,mem_gib")
    result = labsim.run(experiment(path, ("fifo", "drf"), node_cpus=32, node_mem_gib=256))
    cpus = {str(r[0]): r[6] for r in rows}
    for policy in ("fifo", "drf"):
        jobs = {r["job_id"]: r for r in result.table("jobs") if r["policy"] == policy}
        nodes = {a["job_id"]: a["nodes"] for a in result.table("attempts") if a["policy"] == policy}
        assert sorted(nodes[str(i)].split(":")[0] for i in range(4)) == ["0", "1", "2", "3"]
        assert all(float(jobs[str(i)]["start_s"]) == 0 for i in range(4))
        # no node has a CPU free: the one-GPU job asking 1 CPU waits though 12 GPUs are free
        assert float(jobs["10"]["start_s"]) == pytest.approx(1000)
        assert float(jobs["11"]["start_s"]) == pytest.approx(1000)
        for t in (0.5, 1.5, 999, 1000.5, 1500):
            assert all(v <= 32 + 1e-9 for v in cpus_per_node(result, policy, cpus, t).values())


def test_memory_per_node_spreads_a_job_over_the_nodes_that_hold_its_share(tmp_path):
    # 100 GiB per GPU on nodes of 256 GiB: at most 2 of its GPUs per node, so a 4-GPU job spans 2 nodes
    path = write(tmp_path, [(0, 0, 1000, 4, "a", "", 400)], header="job_id,submit_time_s,duration_s,num_gpus,"
                                                                  "user,group,mem_gib")
    result = labsim.run(experiment(path, node_mem_gib=256))
    (attempt,) = result.table("attempts")
    assert sorted(int(p.split(":")[1]) for p in attempt["nodes"].split()) == [2, 2]


def test_a_job_whose_share_fits_no_node_exits_2(tmp_path):
    # 40 CPUs for one GPU: no 32-CPU node holds it, though the cluster has 128
    path = tmp_path / "exp.json"
    trace = write(tmp_path, [(0, 0, 100, 1, "a", "", 40)], header="job_id,submit_time_s,duration_s,num_gpus,"
                                                                  "user,group,cpu")
    path.write_text(json.dumps(experiment(trace, node_cpus=32)))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and "job 0 asks for 40 cpu" in result.output and "a node holds 0" in result.output

"""labsim-cluster: fractional GPUs — several jobs on one GPU under labsim-sharing's modes
(time-slicing, MPS, MIG), slowed as the sharing model says, counted by their share."""

from __future__ import annotations

import json

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import jobs_of, write_trace
from labsim.cli import cli

HEADER = "job_id,submit_time_s,duration_s,num_gpus,gpu_fraction,mps_percentage,mig_profile,job_type,user"
NOTEBOOK = {"model": "BERT-base", "batch_size": 16, "seq_len": 128,
            "think_time_dist_config": {"type": "Constant", "value": 60},
            "session_s_dist_config": {"type": "Constant", "value": 100000}}


def experiment(trace: str, sharing: dict | None, device="A100-SXM4-80GB", gpus=1, policies=("fifo",),
               workload=None) -> dict:
    cfg = {"sharing": sharing} if sharing else {}
    return {
        "name": "frac", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": {"type": "custom", "device": device, "gpus_per_node": gpus, "nodes": 1,
                                                      "nics_per_node": gpus}},
        "workload": {"type": "jobs", "trace": trace, **(workload or {})},
        "frameworks_to_test": [{"name": p, "type": "cluster",
                                "config": {"scheduler": {"type": p}, "price_per_gpu_hour": 2.0, **cfg}}
                               for p in policies],
    }


def write(tmp_path, rows, header=HEADER):
    return write_trace(tmp_path, rows, header)


def test_time_slicing_two_halves_take_turns_and_the_survivor_runs_alone(tmp_path):
    from labsim_sharing.modes import DEFAULT_SLICE_MS, DEFAULT_SWITCH_US

    rows = [("a", 0, 1000, "", 0.5, "", "", "", "u"), ("b", 0, 3000, "", 0.5, "", "", "", "u")]
    result = labsim.run(experiment(write(tmp_path, rows), {"mode": "time_slicing"}))
    eff = 1 - DEFAULT_SWITCH_US * 1e-6 / (DEFAULT_SLICE_MS * 1e-3)
    jobs = jobs_of(result)
    t_a = 1000 / (eff / 2)
    assert float(jobs["a"]["end_s"]) == pytest.approx(t_a)
    assert float(jobs["b"]["end_s"]) == pytest.approx(t_a + 2000)      # then alone, at full speed
    runs = [a for a in result.table("attempts")]
    assert {a["nodes"] for a in runs} == {"0:1"}                       # on the one GPU together
    speed = {a["job_id"]: float(a["speed"]) for a in runs}
    assert speed["a"] == pytest.approx(eff / 2)                        # what it made of its run
    assert speed["b"] == pytest.approx(3000 / (t_a + 2000))
    assert float(jobs["a"]["cost_usd"]) == pytest.approx(0.5 * t_a / 3600 * 2.0)   # half a GPU billed
    fifo = result.summary["frameworks"]["fifo"]
    assert fifo["gpu_hours"]["busy"] == pytest.approx(0.5 * (t_a + t_a + 2000) / 3600)
    assert fifo["jct_h_by_size"]["<1 GPU"]["jobs"] == 2


def test_a_job_beside_a_notebook_runs_at_its_rate_averaged_over_the_notebooks_bursts(tmp_path):
    rows = [("nb", 0, "", "", 0.5, "", "", "interactive", "u"), ("t", 0, 1000, "", 0.5, "", "", "", "u")]
    result = labsim.run(experiment(write(tmp_path, rows), {"mode": "time_slicing", "switch_us": 0},
                                   workload={"interactive": NOTEBOOK}))
    jobs = jobs_of(result)
    b = float(jobs["nb"]["busy_gpu_s"]) / (0.5 * 100000)               # the notebook's busy share
    assert 0 < b < 0.05
    speed = (1 - b) * 1.0 + b * 0.5                                    # alone, or half the turns
    assert float(jobs["t"]["end_s"]) == pytest.approx(1000 / speed)
    assert float(jobs["nb"]["end_s"]) == 100000                        # a session is not slowed


def test_mps_rates_are_labsim_sharings_max_min_under_the_sm_caps(tmp_path):
    from labsim_sharing.modes import DEFAULT_MEMBOUND_SM, Mps

    rows = [("capped", 0, 1000, "", "", 50, "", "", "u"), ("full", 5000, 1000, "", "", 100, "", "", "u"),
            ("x", 10000, 1000, "", "", 50, "", "", "u"), ("y", 10000, 1000, "", "", 50, "", "", "u")]
    result = labsim.run(experiment(write(tmp_path, rows), {"mode": "mps"}))
    jobs = jobs_of(result)
    sm = 0.5 + 0.5 * DEFAULT_MEMBOUND_SM                               # half compute, half memory: unknown jobs
    alone = Mps._max_min([sm], [0.5], [min(1.0, 0.5 / sm)])[0]
    assert float(jobs["capped"]["end_s"]) == pytest.approx(1000 / alone)   # its 50 % of the SMs bound it
    assert float(jobs["full"]["end_s"]) == pytest.approx(6000)
    pair = Mps._max_min([sm, sm], [0.5, 0.5], [0.5 / sm, 0.5 / sm])[0]
    assert float(jobs["x"]["end_s"]) == pytest.approx(10000 + 1000 / pair)


def test_mig_instances_pack_as_the_user_guide_allows_and_run_as_smaller_devices(tmp_path):
    from labsim_sharing.mig import profiles_of

    rows = [("a", 0, 1000, "", "", "", "4g.40gb", "", "u"), ("b", 0, 1000, "", "", "", "2g.20gb", "", "u"),
            ("c", 0, 500, "", "", "", "1g.10gb", "", "u"), ("d", 0, 1000, "", "", "", "1g.10gb", "", "u")]
    result = labsim.run(experiment(write(tmp_path, rows), {"mode": "mig"}))
    jobs = jobs_of(result)
    device = labsim.device("A100-SXM4-80GB")

    def speed(name):
        p = profiles_of(device)[name]
        return 1 / (0.5 / (p.sms / device.sm_count) + 0.5 / (p.memory / 8))

    # 4g + 2g + 1g fill the GPU's 7 compute slices; the second 1g waits for one to leave (the 4g)
    assert [float(jobs[j]["start_s"]) for j in "abc"] == [0, 0, 0]
    assert float(jobs["a"]["end_s"]) == pytest.approx(1000 / speed("4g.40gb"))   # isolated: only its size
    assert float(jobs["b"]["end_s"]) == pytest.approx(1000 / speed("2g.20gb"))
    assert float(jobs["c"]["end_s"]) == pytest.approx(500 / speed("1g.10gb"))
    assert float(jobs["d"]["start_s"]) == pytest.approx(float(jobs["a"]["end_s"]))
    assert float(jobs["d"]["end_s"]) == pytest.approx(float(jobs["a"]["end_s"]) + 1000 / speed("1g.10gb"))
    assert float(jobs["a"]["gpus"]) == pytest.approx(4 / 7)            # its compute slices, for cost and quotas
    # two 3g.40gb instances take all 8 memory slices: nothing else fits beside them
    rows = [("a", 0, 1000, "", "", "", "3g.40gb", "", "u"), ("b", 0, 1000, "", "", "", "3g.40gb", "", "u"),
            ("c", 0, 1000, "", "", "", "1g.10gb", "", "u")]
    jobs = jobs_of(labsim.run(experiment(write(tmp_path, rows), {"mode": "mig"})))
    assert float(jobs["c"]["start_s"]) == pytest.approx(float(jobs["a"]["end_s"]))


def test_a_model_given_job_on_a_mig_instance_is_priced_by_labsim_training_there(tmp_path):
    from labsim_sharing.mig import mig_instance_device, profiles_of
    from labsim_training import estimate

    header = "job_id,submit_time_s,duration_s,num_gpus,mig_profile,model,steps,global_batch_size,seq_len"
    path = tmp_path / "jobs.csv"
    path.write_text(header + "\nm,0,,1,2g.20gb,BERT-base,1000,8,512\n")
    result = labsim.run(experiment(str(path), {"mode": "mig"}))
    device = labsim.device("A100-SXM4-80GB")
    instance = mig_instance_device(device, profiles_of(device)["2g.20gb"])
    it = estimate("BERT-base", framework="fsdp", device=instance, seq_len=512, global_batch_size=8, gpus=1,
                  check_memory=False)["iteration_time_s"]
    assert float(jobs_of(result)["m"]["end_s"]) == pytest.approx(1000 * it)


def test_a_tenant_leaving_speeds_the_others_up(tmp_path):
    rows = [("a", 0, 100, "", 0.25, "", "", "", "u"), ("b", 0, 1000, "", 0.25, "", "", "", "u"),
            ("c", 0, 1000, "", 0.25, "", "", "", "u")]
    result = labsim.run(experiment(write(tmp_path, rows), {"mode": "time_slicing", "switch_us": 0}))
    jobs = jobs_of(result)
    assert float(jobs["a"]["end_s"]) == pytest.approx(300)                 # a third of the turns
    assert float(jobs["b"]["end_s"]) == pytest.approx(300 + 900 * 2)       # then halves
    fifo = result.summary["frameworks"]["fifo"]
    assert fifo["gpu_hours"]["busy"] == pytest.approx(0.25 * (300 + 2100 + 2100) / 3600)


def test_one_trace_serves_every_mode_each_reading_its_own_request(tmp_path):
    # each job asks for a quarter of a GPU, 25 % of its SMs and a 2g.20gb instance at once
    rows = [(str(i), 0, 1000, "", 0.25, 25, "2g.20gb", "", "u") for i in range(4)]
    trace = write(tmp_path, rows)
    exp = experiment(trace, None, policies=("fifo", "fifo2", "fifo3", "fifo4"))
    for entry, mode in zip(exp["frameworks_to_test"], ("time_slicing", "mps", "mig", "exclusive")):
        entry["config"]["scheduler"] = {"type": "fifo"}
        entry["config"]["sharing"] = {"mode": mode}
        entry["config"]["record_usage"] = True
    exp["hardware_profile"]["topology"].update(gpus_per_node=4, nics_per_node=4)
    result = labsim.run(exp)
    busy = {p: max(int(u["gpus_busy"]) for u in result.table("cluster_usage") if u["policy"] == p)
            for p in ("fifo", "fifo2", "fifo3", "fifo4")}
    # four quarters on one GPU; three 2g instances fill one (6 of 7 slices), the fourth takes
    # another; exclusive: a whole GPU each
    assert busy == {"fifo": 1, "fifo2": 1, "fifo3": 2, "fifo4": 4}
    shares = {p: sorted({round(float(r["gpus"]), 6) for r in result.table("jobs") if r["policy"] == p})
              for p in busy}
    assert shares == {"fifo": [0.25], "fifo2": [0.25], "fifo3": [round(2 / 7, 6)], "fifo4": [1.0]}


def test_failed_tenants_give_the_gpu_back_when_the_last_one_leaves(tmp_path):
    rows = [("a", 0, 1000, "", 0.5, "", "", "", "u"), ("b", 0, 1000, "", 0.5, "", "", "", "u"),
            ("w", 10, 1000, 1, "", "", "", "", "u")]
    exp = experiment(write(tmp_path, rows), {"mode": "time_slicing"})
    exp["frameworks_to_test"][0]["config"]["failures"] = {"image_pull_failure_probability": 1.0, "max_retries": 0,
                                                          "xid_per_gpu_hour": 0, "software_per_gpu_hour": 0,
                                                          "node_mtbf_h": 1e12, "partitions_per_gpu_hour": 0}
    result = labsim.run(exp)
    runs = {a["job_id"]: a for a in result.table("attempts")}
    assert runs["a"]["outcome"] == runs["b"]["outcome"] == "interrupted"
    assert float(runs["a"]["end_s"]) == float(runs["b"]["end_s"]) == 120          # the pull timeout
    assert float(runs["w"]["start_s"]) == 120                                     # the whole GPU is back
    assert {r["status"] for r in result.table("jobs")} == {"failed"}


@pytest.mark.parametrize("rows, sharing, device, message", [
    ([("a", 0, 10, "", 0.5, "", "", "", "u")], None, "A100-SXM4-80GB",
     "workload.trace line 2: job a asks for gpu_fraction but the cluster shares no GPUs"),
    ([("a", 0, 10, "", "", "", "3g.20gb", "", "u")], {"mode": "mig"}, "A100-SXM4-80GB",
     "job a, mig_profile: '3g.20gb'; A100-SXM4-80GB offers 1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"),
    ([("a", 0, 10, "", "", "", "3g.40gb", "", "u")], {"mode": "mig"}, "V100-SXM2-32GB",
     "sharing.mode: mig on V100-SXM2-32GB, which has no MIG; GPUs with MIG: A100-SXM4-40GB"),
    ([("a", 0, 10, "", "", 50, "", "", "u")], {"mode": "time_slicing"}, "A100-SXM4-80GB",
     "job a asks for mps_percentage; under sharing mode time_slicing a job asks for gpu_fraction"),
    ([("a", 0, 10, "", 0.5, "", "", "", "u")], {"mode": "mig"}, "A100-SXM4-80GB",
     "job a asks for gpu_fraction; under sharing mode mig a job asks for mig_profile (a GPU instance)"),
    ([("a", 0, 10, 2, 0.5, "", "", "", "u")], {"mode": "mps"}, "A100-SXM4-80GB",
     "asks for 2 GPUs and gpu_fraction; a fractional job runs on part of one GPU"),
    ([("a", 0, 10, "", 1.5, "", "", "", "u")], {"mode": "mps"}, "A100-SXM4-80GB",
     "line 2, column gpu_fraction: '1.5'; allowed: 0 < f ≤ 1"),
    ([("a", 0, 10, "", 0.5, "", "", "", "u")], {"mode": "time_slicing", "switch_us": 5000}, "A100-SXM4-80GB",
     "sharing.switch_us: 5000 µs per switch leaves nothing of a 2 ms slice"),
])
def test_bad_fraction_requests_exit_2_naming_the_field(tmp_path, rows, sharing, device, message):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(experiment(write(tmp_path, rows), sharing, device=device)))
    result = CliRunner().invoke(cli, ["run", str(exp), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output


def test_sharing_per_node_group_keeps_fractions_on_the_groups_that_share(tmp_path):
    rows = [("m1", 0, 1000, "", "", "", "3g.40gb", "", "u"), ("m2", 0, 1000, "", "", "", "3g.40gb", "", "u"),
            ("w1", 0, 1000, 1, "", "", "", "", "u"), ("w2", 0, 1000, 1, "", "", "", "", "u")]
    exp = experiment(write(tmp_path, rows), None)
    exp["hardware_profile"]["topology"]["nodes"] = 2
    exp["frameworks_to_test"][0]["config"]["gpu_types"] = [
        {"name": "mig-pool", "nodes": 1, "sharing": {"mode": "mig"}}, {"name": "whole", "nodes": 1}]
    result = labsim.run(exp)
    runs = {a["job_id"]: a for a in result.table("attempts")}
    assert runs["m1"]["gpu_type"] == runs["m2"]["gpu_type"] == "mig-pool"
    assert float(runs["m2"]["start_s"]) == 0                          # two 3g instances on the pool's GPU
    # the whole-GPU jobs share the other node in turn: the MIG GPU is busy until its instances end
    assert float(runs["m1"]["end_s"]) > 1000
    assert sorted(float(runs[j]["start_s"]) for j in ("w1", "w2")) == [0, 1000]
    assert {runs[j]["gpu_type"] for j in ("w1", "w2")} == {"whole"}
    bad = [("f", 0, 10, "", 0.5, "", "", "", "u")]
    exp["workload"]["trace"] = write(tmp_path, bad)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    out = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "under sharing mode mig a job asks for mig_profile" in out.output, out.output


def test_a_model_given_job_too_big_for_its_mig_instance_runs_out_of_memory_there(tmp_path):
    header = "job_id,submit_time_s,duration_s,num_gpus,mig_profile,model,steps,global_batch_size,seq_len"
    path = tmp_path / "jobs.csv"
    # GPT-2-XL's weights, gradients and Adam states (~25 GB) fit an A100 80 GB, not a 1g.10gb instance
    path.write_text(header + "\nx,0,,1,1g.10gb,GPT-2-XL,100,8,1024\nok,0,,1,7g.80gb,GPT-2-XL,100,8,1024\n")
    exp = experiment(str(path), {"mode": "mig"})
    exp["frameworks_to_test"][0]["config"]["failures"] = {"max_retries": 0, "xid_per_gpu_hour": 0,
                                                          "software_per_gpu_hour": 0, "node_mtbf_h": 1e12,
                                                          "partitions_per_gpu_hour": 0}
    result = labsim.run(exp)
    runs = {a["job_id"]: a for a in result.table("attempts")}
    assert runs["x"]["failure"] == "oom" and runs["ok"]["outcome"] == "completed"
    assert {r["job_id"]: r["status"] for r in result.table("jobs")} == {"x": "failed", "ok": "completed"}


def test_gavel_places_fractional_jobs_only_on_the_groups_that_share(tmp_path):
    pytest.importorskip("scipy")
    rows = [(f"f{i}", 0, 1000, "", 0.5, "", "", "", "u") for i in range(4)] + \
        [(f"w{i}", 0, 1000, 1, "", "", "", "", "u") for i in range(3)]
    exp = experiment(write(tmp_path, rows), None, policies=("gavel",))
    exp["hardware_profile"]["topology"].update(nodes=2, gpus_per_node=2, nics_per_node=2)
    exp["frameworks_to_test"][0]["config"]["gpu_types"] = [
        {"name": "shared", "nodes": 1, "sharing": {"mode": "time_slicing"}}, {"name": "whole", "nodes": 1}]
    result = labsim.run(exp)
    runs = result.table("attempts")
    assert {a["gpu_type"] for a in runs if a["job_id"].startswith("f")} == {"shared"}
    assert {r["status"] for r in result.table("jobs")} == {"completed"}


def _cpu_trace(tmp_path, rows):
    path = tmp_path / "cpu_jobs.csv"
    path.write_text("job_id,submit_time_s,duration_s,num_gpus,gpu_fraction,cpu,user\n"
                    + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def test_a_fractional_job_holds_its_whole_cpus_on_its_node_and_waits_when_they_are_taken(tmp_path):
    # one node, 8 CPUs: two quarter-GPU jobs asking 4 CPUs each fill the CPUs; the third waits
    # though the GPU has room for it (before, a fraction was priced as cpu/fraction per GPU and
    # the run exited 2: "a node holds 0 of its GPUs")
    rows = [(f"j{i}", 0, 1000, "", 0.25, 4, "u") for i in range(3)]
    exp = experiment(_cpu_trace(tmp_path, rows), {"mode": "time_slicing"})
    exp["frameworks_to_test"][0]["config"]["node_cpus"] = 8
    jobs = jobs_of(labsim.run(exp))
    starts = sorted(float(jobs[f"j{i}"]["start_s"]) for i in range(3))
    assert starts[:2] == [0, 0] and starts[2] > 0
    assert all(r["status"] == "completed" for r in jobs.values())


def test_a_fractional_job_asking_more_cpus_than_a_node_has_exits_2(tmp_path):
    # two nodes of 8 CPUs: the cluster has its 16, but the job runs on one GPU of one node
    exp = experiment(_cpu_trace(tmp_path, [("big", 0, 100, "", 0.5, 16, "u")]), {"mode": "mps"})
    exp["hardware_profile"]["topology"]["nodes"] = 2
    exp["frameworks_to_test"][0]["config"]["node_cpus"] = 8
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2
    assert "job big asks for 16 cpu and 0 mem_gib on part of one GPU; no node has that much" in result.output

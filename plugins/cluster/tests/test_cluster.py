"""labsim-cluster: traces, the policies, invariants, and runs end to end."""

from __future__ import annotations

import copy
import json

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import write_trace
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.cli import cli

CLUSTER = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 4,
           "nic": "roce-100", "nics_per_node": 1}


def experiment(jobs_csv: str, policies=("fifo",), **cluster_cfg) -> dict:
    return {
        "name": "c", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": dict(CLUSTER)},
        "workload": {"type": "jobs", "trace": jobs_csv},
        "frameworks_to_test": [{"name": p, "type": "cluster",
                                "config": {"scheduler": {"type": p}, **cluster_cfg}} for p in policies],
    }


def write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user"):
    return write_trace(tmp_path, rows, header)


def jobs_table(result, policy):
    return [r for r in result.table("jobs") if r["policy"] == policy]


# -- policies ---------------------------------------------------------------------------------------

def test_fifo_blocks_behind_the_head_and_backfill_does_not(tmp_path):
    # 16 GPUs: a 12-GPU job runs 100 s; a 16-GPU job waits for it; a 4-GPU 50 s job fits beside
    trace = write(tmp_path, [(0, 0, 100, 12, "a"), (1, 1, 100, 16, "b"), (2, 2, 50, 4, "c")])
    result = labsim.run(experiment(trace, ("fifo", "easy_backfill")))
    fifo = {r["job_id"]: r for r in jobs_table(result, "fifo")}
    easy = {r["job_id"]: r for r in jobs_table(result, "easy_backfill")}
    assert float(fifo["2"]["start_s"]) == pytest.approx(200.0)   # behind the 16-GPU job
    assert float(easy["2"]["start_s"]) == pytest.approx(2.0)     # ends at 52 s, before the head's 100 s
    assert float(easy["1"]["start_s"]) == float(fifo["1"]["start_s"]) == pytest.approx(100.0)


def test_srtf_and_tiresias_preempt_a_long_job_for_short_ones(tmp_path):
    trace = write(tmp_path, [(0, 0, 10000, 16, "a")] + [(i, 10 + i, 60, 4, "b") for i in range(1, 5)])
    result = labsim.run(experiment(trace, ("fifo", "srtf", "tiresias"),
                                   preemption_overhead_s=30))
    s = result.summary["frameworks"]
    assert s["fifo"]["jobs"]["preemptions"] == 0
    assert s["srtf"]["jobs"]["preemptions"] >= 1 and s["srtf"]["jct_h"]["p50"] < s["fifo"]["jct_h"]["p50"]
    # Tiresias does not know durations: the long job passes 3,600 GPU-s after 225 s and yields then
    assert s["tiresias"]["jobs"]["preemptions"] >= 1
    long_job = {r["job_id"]: r for r in jobs_table(result, "srtf")}["0"]
    assert float(long_job["end_s"]) >= 10000 + 60 + 30  # the short jobs' time and the restore


def test_fair_share_serves_the_user_with_less_gpu_time_first(tmp_path):
    rows = [(i, 0, 1000, 16, "heavy") for i in range(3)] + [(10, 5, 1000, 16, "light")]
    result = labsim.run(experiment(write(tmp_path, rows), ("fifo", "fair_share")))
    fifo = {r["job_id"]: r for r in jobs_table(result, "fifo")}
    fair = {r["job_id"]: r for r in jobs_table(result, "fair_share")}
    assert float(fair["10"]["end_s"]) < float(fifo["10"]["end_s"])
    jain = {p: result.summary["frameworks"][p]["fairness_jain"] for p in ("fifo", "fair_share")}
    assert jain["fair_share"] > jain["fifo"]


def test_published_ordering_on_the_gavel_philly_trace():
    from pathlib import Path

    exp = labsim.orchestrator.load_experiment(
        Path(__file__).resolve().parents[3] / "examples" / "cluster_gavel_philly.yaml").data
    exp["workload"].update(max_jobs=600, time_scale=0.01)  # the first 600 jobs, arriving 100× denser
    exp["frameworks_to_test"] = [f for f in exp["frameworks_to_test"]
                                 if f["name"] in ("fifo", "sjf", "srtf", "tiresias")]
    s = labsim.run(exp).summary["frameworks"]
    jct = {p: s[p]["jct_h"]["mean"] for p in s}
    # shortest-remaining first is best; Tiresias, without durations, beats FIFO (Gu et al. NSDI'19)
    assert jct["srtf"] <= jct["sjf"] <= jct["fifo"] and jct["tiresias"] < jct["fifo"]


# -- invariants -------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(jobs=st.lists(st.tuples(st.floats(0, 500), st.floats(1, 400), st.sampled_from([1, 2, 4, 8, 16]),
                               st.sampled_from(["a", "b", "c"])), min_size=1, max_size=25),
       policy=st.sampled_from(["fifo", "sjf", "srtf", "easy_backfill", "tiresias", "fair_share"]),
       overhead=st.sampled_from([0.0, 20.0]))
def test_every_job_ends_once_never_early_and_gpus_never_overflow(tmp_path_factory, jobs, policy, overhead):
    rows = [(i, round(a, 3), round(d, 3), g, u) for i, (a, d, g, u) in enumerate(jobs)]
    result = labsim.run(experiment(write(tmp_path_factory.mktemp("t"), rows), (policy,),
                                   preemption_overhead_s=overhead, reschedule_every_s=30))
    table = jobs_table(result, policy)
    assert sorted(int(r["job_id"]) for r in table) == list(range(len(rows)))
    events = []
    for r in table:
        arrival, start, end = float(r["arrival_s"]), float(r["start_s"]), float(r["end_s"])
        job = rows[int(r["job_id"])]
        assert start >= arrival - 1e-9 and end - arrival >= job[2] - 1e-6
        if int(r["preemptions"]) == 0:
            events += [(start, int(job[3])), (end, -int(job[3]))]
    # non-preempted jobs alone never hold more than the cluster
    in_use = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        in_use += delta
        assert in_use <= 16


# -- bad traces and clusters ------------------------------------------------------------------------

@pytest.mark.parametrize("header, rows, message", [
    ("job_id,submit_time_s,num_gpus", [(0, 0, 1)], "has no column duration_s"),
    ("job_id,submit_time_s,duration_s,num_gpus", [(0, 0, -5, 1)], "line 2, column duration_s: '-5'"),
    ("job_id,submit_time_s,duration_s,num_gpus", [(0, 0, 10, 1), (1, "soon", 10, 1)],
     "line 3, column submit_time_s: 'soon' is not a number"),
    ("job_id,submit_time_s,duration_s,num_gpus", [(0, 0, 10, 64)], "job 0 asks for 64 GPUs; the cluster has 16"),
])
def test_bad_traces_exit_2_naming_row_and_column(tmp_path, header, rows, message):
    path = write(tmp_path, rows, header)
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(experiment(path)))
    result = CliRunner().invoke(cli, ["run", str(exp), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_cluster_needs_a_topology(tmp_path):
    exp = experiment(write(tmp_path, [(0, 0, 10, 1, "a")]))
    exp["hardware_profile"] = {"device": "V100-SXM2-32GB"}
    with pytest.raises(labsim.errors.LabsimError, match="a cluster needs hardware_profile.topology"):
        labsim.run(exp)


def test_generated_jobs_are_the_same_for_every_policy_and_seed():
    exp = experiment("unused", ("fifo", "sjf"))
    exp["workload"] = {"type": "jobs", "generate": {"jobs": 50, "rate_per_hour": 40,
                                                    "users": ["ann", "bob"]}}
    one, two = labsim.run(copy.deepcopy(exp)), labsim.run(copy.deepcopy(exp))
    assert one.summary == two.summary
    fifo = sorted((r["job_id"], r["arrival_s"], r["gpus"]) for r in jobs_table(one, "fifo"))
    sjf = sorted((r["job_id"], r["arrival_s"], r["gpus"]) for r in jobs_table(one, "sjf"))
    assert fifo == sjf and {r["user"] for r in jobs_table(one, "fifo")} == {"ann", "bob"}


def test_interrupted_jobs_lose_the_work_since_their_checkpoint_and_retry(tmp_path):
    rows = [(i, i * 10, 20000, 4, "a") for i in range(8)]
    trace = write(tmp_path, rows)

    def run(**failures):
        exp = experiment(trace, ("fifo",), failures=failures)
        return labsim.run(exp)

    clean = labsim.run(experiment(trace, ("fifo",))).summary["frameworks"]["fifo"]
    often = run(xid_per_gpu_hour=0.02, checkpoint_interval_s=3600)
    s = often.summary["frameworks"]["fifo"]
    assert clean["jobs"]["interruptions"] == 0 and s["jobs"]["interruptions"] > 0
    assert s["gpu_hours_lost_to_failures"] > 0 and s["jct_h"]["mean"] > clean["jct_h"]["mean"]
    rare_ckpt = run(xid_per_gpu_hour=0.02, checkpoint_interval_s=14400).summary["frameworks"]["fifo"]
    assert rare_ckpt["gpu_hours_lost_to_failures"] > s["gpu_hours_lost_to_failures"]
    strict = run(xid_per_gpu_hour=0.02, max_retries=0)
    table = jobs_table(strict, "fifo")
    assert {r["status"] for r in table} == {"completed", "failed"} and len(table) == len(rows)
    assert strict.summary["frameworks"]["fifo"]["jobs"]["failed"] == sum(r["status"] == "failed" for r in table)
    again = run(xid_per_gpu_hour=0.02, checkpoint_interval_s=3600)
    assert again.summary == often.summary  # same seed, same interruptions


def test_jobs_land_in_sqlite_and_labsim_jobs_queries_them(tmp_path):
    import sqlite3

    rows = [(i, i * 10, 20000, 4, "ann" if i % 2 else "bob") for i in range(8)]
    exp = experiment(write(tmp_path, rows), ("fifo", "srtf"),
                     failures={"xid_per_gpu_hour": 0.02, "max_retries": 0})
    exp["metrics_config"] = {"sinks": ["summary_json", "csv", "sqlite"]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    out = tmp_path / "run"
    assert CliRunner().invoke(cli, ["run", str(path), "--out", str(out)]).exit_code == 0
    con = sqlite3.connect(out / "run.sqlite")
    meta = dict(con.execute("SELECT key, value FROM labsim_meta"))
    assert meta["schema_version"] == "1" and "status" in json.loads(meta["columns.jobs"])
    assert con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 16
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # the WAL folded in
    failed = con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'failed' AND policy = 'fifo'").fetchone()[0]
    con.close()
    assert not list(out.glob(".run.sqlite*"))
    result = CliRunner().invoke(cli, ["jobs", str(out), "--policy", "fifo", "--status", "failed",
                                      "--format", "json"])
    assert result.exit_code == 0 and len(json.loads(result.output)) == failed
    ann = CliRunner().invoke(cli, ["jobs", str(out), "--user", "ann", "--format", "csv"])
    assert ann.exit_code == 0 and len(ann.output.strip().splitlines()) == 1 + 8
    missing = CliRunner().invoke(cli, ["jobs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "RUN_DIR: no folder" in missing.output


def test_a_training_job_given_by_model_and_steps_gets_its_duration_from_labsim_training(tmp_path):
    from labsim_training import estimate

    path = write(tmp_path, [(0, 0, "", 8, "a", "GPT-2-Large", 500, 1024, 64),
                            (1, 5, 300, 1, "b", "", "", "", "")],
                 header="job_id,submit_time_s,duration_s,num_gpus,user,model,steps,seq_len,global_batch_size")
    exp = experiment(path, ("fifo",))
    exp["hardware_profile"]["topology"] = {"type": "dgx-a100", "nodes": 2}
    exp["workload"]["predict"] = {"framework": "fsdp", "config": {"micro_batch_size": 8}}
    table = {r["job_id"]: r for r in jobs_table(labsim.run(exp), "fifo")}
    it = estimate("GPT-2-Large", framework="fsdp", config={"micro_batch_size": 8}, device="A100-SXM4-80GB",
                  topology={"type": "dgx-a100", "nodes": 2}, seq_len=1024, global_batch_size=64,
                  gpus=8)["iteration_time_s"]
    assert float(table["0"]["duration_s"]) == pytest.approx(500 * it, rel=1e-9)
    assert float(table["1"]["duration_s"]) == 300


def test_a_high_priority_job_preempts_and_pays_the_restore(tmp_path):
    path = write(tmp_path, [(0, 0, 1000, 16, "a", 0), (1, 100, 200, 8, "b", 5)],
                 header="job_id,submit_time_s,duration_s,num_gpus,user,priority")
    result = labsim.run(experiment(path, ("fifo", "priority"), preemption_overhead_s=50))
    fifo = {r["job_id"]: r for r in jobs_table(result, "fifo")}
    prio = {r["job_id"]: r for r in jobs_table(result, "priority")}
    assert float(fifo["1"]["start_s"]) == pytest.approx(1000.0)
    assert float(prio["1"]["start_s"]) == pytest.approx(100.0) and int(prio["0"]["preemptions"]) == 1
    assert float(prio["0"]["end_s"]) == pytest.approx(1000 + 200 + 50)  # waited 200 s, restored in 50


def test_the_usage_table_follows_every_decision(tmp_path):
    rows = [(i, i * 10, 500, 4, "a") for i in range(10)]
    exp = experiment(write(tmp_path, rows), ("fifo",), record_usage=True)
    usage = labsim.run(exp).table("cluster_usage")
    busy = [int(r["gpus_busy"]) for r in usage]
    assert max(busy) == 16 and busy[-1] == 0 and all(0 <= b <= 16 for b in busy)
    assert max(int(r["jobs_waiting"]) for r in usage) > 0
    times = [float(r["time_s"]) for r in usage]
    assert times == sorted(times)


# -- attempts -------------------------------------------------------------------------------------

def test_attempts_account_for_every_run_of_every_job(tmp_path):
    """One attempts row per time a job ran: preemptions, interruptions and the completing run; the
    work of a completed job's attempts adds up to its duration, and the interruptions' losses to
    the summary's GPU-hours lost."""
    rows = [(0, 0, 20000, 16, "a")] + [(i, 10 + 50 * i, 600 + 100 * i, 4, "b") for i in range(1, 12)]
    trace = write(tmp_path, rows)
    result = labsim.run(experiment(trace, ("fifo", "srtf", "tiresias"), preemption_overhead_s=30,
                                   failures={"xid_per_gpu_hour": 0.05, "checkpoint_interval_s": 600,
                                             "max_retries": 5}))
    attempts = result.table("attempts")
    outcomes = {a["outcome"] for a in attempts}
    assert {"completed", "preempted", "interrupted"} <= outcomes
    for policy, summary in result.summary["frameworks"].items():
        mine = [a for a in attempts if a["policy"] == policy]
        lost = sum(float(a["lost_gpu_s"]) for a in mine) / 3600
        assert lost == pytest.approx(summary["gpu_hours_lost_to_failures"], abs=1e-9)
        for job in jobs_table(result, policy):
            runs = sorted((a for a in mine if a["job_id"] == job["job_id"]), key=lambda a: int(a["attempt"]))
            assert [int(a["attempt"]) for a in runs] == list(range(1, len(runs) + 1))
            completed = job["status"] == "completed"
            assert len(runs) == int(job["preemptions"]) + int(job["failures"]) + completed
            for a, b in zip(runs, runs[1:]):
                assert float(a["end_s"]) <= float(b["start_s"])
            if completed:
                assert runs[-1]["outcome"] == "completed"
                assert float(runs[-1]["end_s"]) == pytest.approx(float(job["end_s"]))
                # the work done, less what interruptions lost, is the job's duration
                kept = sum(float(a["work_s"]) for a in runs) - sum(float(a["lost_gpu_s"]) for a in runs) / int(job["gpus"])
                assert kept == pytest.approx(float(job["duration_s"]), rel=1e-9, abs=1e-6)


def test_labsim_jobs_lists_attempts(tmp_path):
    trace = write(tmp_path, [(0, 0, 10000, 16, "a")] + [(i, 10 + i, 60, 4, "b") for i in range(1, 5)])
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(experiment(trace, ("srtf",))))
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["run", str(path), "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(cli, ["jobs", str(out), "--attempts", "--job", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    assert [r["outcome"] for r in runs] == ["preempted", "completed"]
    bad = CliRunner().invoke(cli, ["jobs", str(out), "--attempts", "--status", "failed"])
    assert bad.exit_code == 2 and "with --attempts use --policy" in bad.output


# -- monitoring ----------------------------------------------------------------------------------

def test_monitoring_rules_fire_and_resolve_in_simulated_time(tmp_path):
    # 16 GPUs: job 0 holds all of them 0-1000 s; job 1 (16 GPUs) waits from 10 s to 1000 s
    trace = write(tmp_path, [(0, 0, 1000, 16, "a"), (1, 10, 1000, 16, "b")])
    rules = [{"name": "long-queue", "metric": "queue_wait_h", "above": 0.1},
             {"name": "idle", "metric": "gpu_utilisation", "below": 0.5},
             {"name": "queued", "metric": "queue_length", "above": 0}]
    plain = labsim.run(experiment(trace, ("fifo",)))
    result = labsim.run(experiment(trace, ("fifo",), monitoring={"every_s": 100, "rules": rules}))
    events = [(float(e["time_s"]), e["name"], e["state"]) for e in result.table("events")]
    assert events == [
        (0.0, "idle", "firing"),             # the first check sees the empty cluster
        (100.0, "idle", "resolved"),
        (100.0, "queued", "firing"),
        (400.0, "long-queue", "firing"),     # 390 s of waiting > 0.1 h
        (1100.0, "long-queue", "resolved"),  # the check at 1,000 s sees the state before job 1 started
        (1100.0, "queued", "resolved"),
    ]
    alerts = result.summary["frameworks"]["fifo"]["alerts"]
    assert alerts["long-queue"] == {"metric": "queue_wait_h", "fired": 1, "firing_h": pytest.approx(700 / 3600),
                                    "firing_at_end": False}
    # the checks keep no timer of their own: the run ends when the last job does
    assert result.summary["simulated_time_s"] == plain.summary["simulated_time_s"] == 2000


def test_interruption_rate_rule(tmp_path):
    trace = write(tmp_path, [(i, 0, 36000, 4, "a") for i in range(4)])
    result = labsim.run(experiment(trace, ("fifo",), failures={"xid_per_gpu_hour": 0.05,
                                                               "max_retries": 50, "retry_backoff_s": 1},
                                   monitoring={"every_s": 3600, "rules": [
                                       {"name": "flaky", "metric": "interruptions_per_hour", "above": 0.5}]}))
    s = result.summary["frameworks"]["fifo"]
    assert s["jobs"]["interruptions"] > 0 and s["alerts"]["flaky"]["fired"] >= 1
    assert {e["name"] for e in result.table("events") if e["kind"] == "alert"} == {"flaky"}


def test_a_rule_without_a_threshold_is_refused(tmp_path):
    trace = write(tmp_path, [(0, 0, 100, 1, "a")])
    with pytest.raises(labsim.LabsimError, match="monitoring"):
        labsim.run(experiment(trace, ("fifo",), monitoring={"rules": [{"name": "x", "metric": "queue_length"}]}))

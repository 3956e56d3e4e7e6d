"""labsim-cluster: readers of the Tiresias, Gavel and Pollux trace formats and of the Philly,
Helios and Alibaba PAI production logs; bad rows exit 2 naming the line and the column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import labsim
import pytest
from click.testing import CliRunner
from labsim.cli import cli

DATA = Path(__file__).parent / "data"
CLUSTER = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 16,
           "nic": "roce-100", "nics_per_node": 1}


def run(workload: dict, nodes: int = 125):
    """A FIFO run of the *workload* (trace paths absolute) on *nodes* nodes of 4 V100s."""
    exp = {"name": "r", "simulation": {"max_simulation_time": 1e12, "random_seed": 0},
           "hardware_profile": {"topology": dict(CLUSTER, nodes=nodes)},
           "workload": {"type": "jobs", **workload},
           "frameworks_to_test": [{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}}]}
    return labsim.run(exp)


def shipped(name: str) -> list:
    from labsim_cluster.jobs import _builtin_path, read_trace

    return read_trace(_builtin_path(name))


def key(jobs):
    return [(j.job_id, j.gpus, round(j.duration_s, 3), j.arrival_s, j.kind) for j in jobs]


def test_the_tiresias_reader_gives_the_shipped_normalized_trace():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_tiresias

    raw = read_tiresias(DATA / "tiresias_60_job.csv", "workload.trace", Job)
    assert len(raw) == 60 and key(sorted(raw, key=lambda j: j.arrival_s)) == key(shipped("tiresias_60job"))
    result = run({"trace": str(DATA / "tiresias_60_job.csv"), "format": "tiresias"}, nodes=16)
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 60


def test_the_gavel_reader_prices_steps_at_the_v100_throughput_as_the_shipped_trace(tmp_path):
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_gavel

    raw, dropped = read_gavel(DATA / "gavel_seed0_vc6214e9_head120.trace", "workload.trace", Job, {}, DATA)
    ids = {j.job_id for j in raw}
    # rows 32, 55, 97 and 111 ask for GPU counts Gavel measured no throughput at
    assert dropped == 4 and len(raw) == 116 and not ids & {"32", "55", "97", "111"}
    theirs = [j for j in shipped("gavel_philly") if j.job_id in ids]   # durations to 0.1 s there
    assert [(j.job_id, j.gpus, j.arrival_s, j.kind) for j in raw] == [(j.job_id, j.gpus, j.arrival_s, j.kind)
                                                                      for j in theirs]
    assert [j.duration_s for j in raw] == pytest.approx([j.duration_s for j in theirs], abs=0.05)
    result = run({"trace": str(DATA / "gavel_seed0_vc6214e9_head120.trace"), "format": "gavel"})
    assert result.summary["workload"]["dropped_unpriced"] == 4
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 116
    shutil.copy(DATA / "gavel_seed0_vc6214e9_head120.trace", tmp_path)
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({
        "name": "r", "hardware_profile": {"topology": CLUSTER},
        "workload": {"type": "jobs", "trace": "gavel_seed0_vc6214e9_head120.trace", "format": "gavel",
                     "gavel": {"unpriced": "error"}},
        "frameworks_to_test": [{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}}]}))
    bad = CliRunner().invoke(cli, ["run", str(strict)])
    assert bad.exit_code == 2 and "line 33, field job_type" in bad.output


def test_the_gavel_reader_reads_the_physical_trace_layout():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_gavel

    raw, _ = read_gavel(DATA / "gavel_physical_small_test.trace", "workload.trace", Job, {}, DATA)
    assert raw[0].kind == "Transformer (batch size 128)" and raw[0].gpus == 2 and raw[0].arrival_s == 0


def test_the_pollux_reader_takes_durations_per_application():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_pollux

    durations = {"cifar10": 1800, "bert": 3600, "deepspeech2": 7200, "imagenet": 36000, "ncf": 900,
                 "yolov3": 14400}
    raw = read_pollux(DATA / "pollux_workload-6.csv", "workload.trace", Job, {"durations_s": durations})
    assert len(raw) == 160 and {j.kind for j in raw} == set(durations)
    first = raw[0]
    assert (first.job_id, first.arrival_s, first.gpus, first.duration_s) == ("cifar10-0", 53, 6, 1800)
    result = run({"trace": str(DATA / "pollux_workload-6.csv"), "format": "pollux",
                  "pollux": {"durations_s": durations}}, nodes=16)
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 160


def test_the_philly_reader_takes_the_first_attempts_gpus_and_the_run_from_first_start_to_last_end():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_philly

    jobs, skipped = read_philly(DATA / "philly_cluster_job_log", "workload.trace", Job)
    assert skipped == {"no attempt": 1, "no start or end time": 1}
    got = {j.job_id: (j.gpus, j.duration_s, j.arrival_s, j.user, j.group) for j in jobs}
    # the README's example: 8 GPUs, 2017-10-07 01:12:09 to 2017-10-09 06:53:12 over two attempts,
    # submitted 12 min 39 s after the two-node job (the first submission)
    two_days = 2 * 86400 + 5 * 3600 + 41 * 60 + 3
    assert got == {"application_1506638472019_14199": (8, two_days, 759.0, "ce2f4c", "ee9e8c"),
                   "application_1506638472019_14001": (16, 7200.0, 0.0, "a1b2c3", "ee9e8c"),
                   "application_1506638472019_14302": (1, 1800.0, 3660.0, "d4e5f6", "6214e9")}
    result = run({"trace": str(DATA / "philly_cluster_job_log"), "format": "philly"}, nodes=4)
    assert result.summary["workload"]["skipped"] == {"no attempt": 1, "no start or end time": 1}
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 3


def test_the_helios_reader_keeps_the_gpu_jobs_that_ran():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_helios

    jobs, skipped = read_helios(DATA / "helios_cluster_log.csv", "workload.trace", Job)
    assert skipped == {"no GPU": 1, "ran 0 s": 1}
    assert [(j.job_id, j.gpus, j.cpu, j.duration_s, j.arrival_s, j.user, j.group) for j in jobs] == [
        ("1425511", 1, 1.0, 36848.0, 0.0, "uXBbc", "vcJkd"), ("1425512", 4, 16.0, 249.0, 26.0, "uVMrF", "vchbv"),
        ("1425513", 1, 1.0, 675233.0, 27.0, "uzqls", "vcpDC"), ("1425515", 16, 64.0, 7200.0, 129.0, "uVMrF", "vchbv")]
    result = run({"trace": str(DATA / "helios_cluster_log.csv"), "format": "helios"}, nodes=4)
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 4


def test_the_pai_reader_adds_up_each_jobs_task_instances():
    from labsim_cluster.jobs import Job
    from labsim_cluster.readers import read_pai

    jobs, skipped = read_pai(DATA / "pai_job_table.csv", "workload.trace", Job, {"tasks": "pai_task_table.csv"}, DATA)
    assert skipped == {"never ran": 1, "no GPU": 1, "no task": 1}
    got = {j.job_id: (j.gpus, j.cpu, j.mem_gib, j.duration_s, j.arrival_s) for j in jobs}
    # the README's example job: a parameter server (6 cores, no GPU) and two workers of 4 cores
    # and half a GPU each — 14 CPUs and one GPU, from the first task's start to the last's end
    assert got["4b3f04b66a525d2df903eb16"] == (1, 14.0, pytest.approx(3 * 29.296875), 520.0, 4550879.0 - 1739100.0)
    assert got["4f057009a5d481acec67b088"] == (1, 6.0, 29.296875, 38.0, 0.0)     # 50 % of a GPU takes one
    assert got["6a1c0e2b9f3d4a5b6c7d8e9f"][:2] == (8, 64.0)
    result = run({"trace": str(DATA / "pai_job_table.csv"), "format": "pai",
                  "pai": {"tasks": str(DATA / "pai_task_table.csv")}}, nodes=4)
    assert result.summary["frameworks"]["fifo"]["jobs"]["finished"] == 3


@pytest.mark.parametrize("fmt, name, text, extra, message", [
    ("tiresias", "t.csv", "job_id,num_gpu,submit_time,duration\n0,1,0,100\n1,2,x,100\n", {},
     "t.csv line 3, column submit_time: 'x' is not a number"),
    ("tiresias", "t.csv", "job_id,num_gpu,submit_time,duration\n0,1,0,-5\n", {},
     "t.csv line 2, column duration: -5; allowed: a duration > 0"),
    ("tiresias", "t.csv", "job_id,num_gpu,submit_time\n0,1,0\n", {}, "t.csv has no column duration"),
    ("gavel", "g.trace", "ResNet-18 (batch size 32)\tcmd\t--num_steps\t1\t100\t0.0\t1\n"
                         "ResNet-18 (batch size 32)\tcmd\t--num_steps\t1\tmany\t5.0\t1\n", {},
     "g.trace line 2, field total_steps: 'many' is not a number"),
    ("gavel", "g.trace", "ResNet-18 (batch size 32)\tcmd\t1\t100\n", {}, "g.trace line 1: 4 tab-separated fields"),
    ("pollux", "p.csv", "name,time,application,num_replicas,batch_size\ncifar10-0,53,cifar10,6,2048\n",
     {"pollux": {"durations_s": {"bert": 60}}}, "p.csv line 2, column application: 'cifar10' has no duration"),
    ("pollux", "p.csv", "name,time,application,num_replicas,batch_size\ncifar10-0,53,cifar10,0,2048\n",
     {"pollux": {"durations_s": {"cifar10": 60}}}, "p.csv line 2, column num_replicas: 0; allowed: GPUs ≥ 1"),
    ("philly", "log", '[\n{"jobid": "a", "submitted_time": "2017-10-07 01:11:39", "attempts": []},\n'
                      '{"jobid": "b", "submitted_time": "7 Oct 2017", "attempts": []}\n]',
     {}, "log line 3, key submitted_time: '7 Oct 2017' is not a time YYYY-MM-DD HH:MM:SS"),
    ("philly", "log", '[\n{"jobid": "a", "attempts": []}\n]', {}, "log line 2, key submitted_time: missing"),
    ("philly", "log", '[\n{"jobid": "a",\n "attempts": [}\n]', {}, "log line 3, column 15: not JSON"),
    ("philly", "log", '{"jobid": "a"}', {}, "a Philly cluster_job_log is a JSON list"),
    ("helios", "h.csv", "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
                        "1,u,vc,1,1,1,COMPLETED,2020-06-09 18:41:01,2020-06-09 18:41:01,2020-06-09 18:42:01,60,0\n"
                        "2,u,vc,two,1,1,COMPLETED,2020-06-09 18:41:01,2020-06-09 18:41:01,2020-06-09 18:42:01,60,0\n",
     {}, "h.csv line 3, column gpu_num: 'two' is not a number"),
    ("helios", "h.csv", "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
                        "1,u,vc,1,1,1,COMPLETED,2020-06-09 18:41:01,2020-06-09 18:41:01,2020-06-09 18:42:01,-60,0\n",
     {}, "h.csv line 2, column duration: '-60'; allowed: a number ≥ 0"),
    ("helios", "h.csv", "job_id,user,vc,gpu_num,cpu_num\n1,u,vc,1,1\n", {},
     "h.csv has no column submit_time, duration"),
    ("pai", "pai_job_table.csv", "j1,i1,u1,Terminated,100.0,200.0\nj2,i2,u1,Terminated,later,200.0\n",
     {"pai": {"tasks": "pai_task_table.csv"}}, "pai_job_table.csv line 2, column start_time: 'later' is not a number"),
    ("pai", "pai_job_table.csv", "j1,i1,u1,Terminated,100.0\n", {"pai": {"tasks": "pai_task_table.csv"}},
     "pai_job_table.csv line 1: 5 columns; a PAI pai_job_table has 6"),
    ("pai", "pai_job_table.csv", "j1,i1,u1,Terminated,100.0,200.0\n", {"pai": {"tasks": "bad_tasks.csv"}},
     "workload.pai.tasks: bad_tasks.csv line 2, column plan_gpu: 'half' is not a number"),
])
def test_bad_rows_exit_2_naming_the_line_and_column(tmp_path, fmt, name, text, extra, message):
    (tmp_path / name).write_text(text)
    (tmp_path / "pai_task_table.csv").write_text("j1,worker,1.0,Terminated,110.0,190.0,600.0,29.3,100.0,V100\n")
    (tmp_path / "bad_tasks.csv").write_text("j1,worker,1.0,Terminated,110.0,190.0,600.0,29.3,100.0,V100\n"
                                            "j1,ps,1.0,Terminated,110.0,190.0,600.0,29.3,half,V100\n")
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({
        "name": "r", "hardware_profile": {"topology": CLUSTER},
        "workload": {"type": "jobs", "trace": name, "format": fmt, **extra},
        "frameworks_to_test": [{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}}]}))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output

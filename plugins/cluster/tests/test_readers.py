"""labsim-cluster: readers of the Tiresias, Gavel and Pollux trace formats; bad rows exit 2
naming the line and the column."""

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
])
def test_bad_rows_exit_2_naming_the_line_and_column(tmp_path, fmt, name, text, extra, message):
    (tmp_path / name).write_text(text)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({
        "name": "r", "hardware_profile": {"topology": CLUSTER},
        "workload": {"type": "jobs", "trace": name, "format": fmt, **extra},
        "frameworks_to_test": [{"name": "fifo", "type": "cluster", "config": {"scheduler": {"type": "fifo"}}}]}))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output

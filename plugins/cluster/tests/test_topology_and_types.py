"""labsim-cluster: topology-aware placement, locality slowdowns, fragmentation, GPU types and
the Gavel scheduler."""

from __future__ import annotations

import csv
import importlib.util
import json
from importlib import resources

import labsim
import pytest
from click.testing import CliRunner
from cluster_traces import write_trace
from labsim.cli import cli

# 4 nodes of 4 GPUs, two leaves of two nodes
LEAVES = {"type": "custom", "device": "V100-SXM2-32GB", "gpus_per_node": 4, "nodes": 4,
          "nic": "roce-100", "nics_per_node": 1, "fabric": "fat-tree", "nodes_per_leaf": 2}


def experiment(trace: str, frameworks: dict, topology=None) -> dict:
    return {
        "name": "t", "simulation": {"max_simulation_time": 1e9, "random_seed": 0},
        "hardware_profile": {"topology": dict(topology or LEAVES)},
        "workload": {"type": "jobs", "trace": trace},
        "frameworks_to_test": [{"name": n, "type": "cluster", "config": c} for n, c in frameworks.items()],
    }


def write(tmp_path, rows, header="job_id,submit_time_s,duration_s,num_gpus,user"):
    return write_trace(tmp_path, rows, header)


def attempts(result, policy):
    return {r["job_id"]: r for r in result.table("attempts") if r["policy"] == policy}


def gavel_row(gpu, job_type, gpus):
    path = resources.files("labsim_cluster") / "data" / "gavel_throughputs.csv"
    with open(str(path), newline="") as fh:
        for r in csv.DictReader(fh):
            if (r["gpu_type"], r["job_type"], int(r["num_gpus"])) == (gpu, job_type, gpus):
                return float(r["steps_per_s"]), float(r["steps_per_s_unconsolidated"] or "nan")
    raise KeyError((gpu, job_type, gpus))


# -- placement --------------------------------------------------------------------------------------

def test_pack_keeps_a_two_node_job_under_one_leaf_and_spread_does_not(tmp_path):
    # a 4-GPU job takes node 0; the 8-GPU job then fits leaf 1 (nodes 2, 3) whole
    trace = write(tmp_path, [(0, 0, 1000, 4, "a"), (1, 1, 100, 8, "b")])
    result = labsim.run(experiment(trace, {p: {"scheduler": {"type": "fifo"}, "placement": p,
                                               "locality": {"across_leaves": 2.0}}
                                           for p in ("pack", "spread", "any")}))
    pack, spread, anyp = (attempts(result, p)["1"] for p in ("pack", "spread", "any"))
    assert (pack["nodes"], pack["locality"], float(pack["speed"])) == ("2:4 3:4", "leaf", 1.0)
    assert (spread["nodes"], spread["locality"]) == ("1:4 2:4", "spine")
    assert anyp["nodes"] == "1:4 2:4"
    # across leaves it runs at half speed: the 100 s of work take 200 s
    assert float(spread["end_s"]) - float(spread["start_s"]) == pytest.approx(200.0)
    assert float(pack["end_s"]) - float(pack["start_s"]) == pytest.approx(100.0)
    s = result.summary["frameworks"]
    assert s["pack"]["placement"]["runs"] == {"node": 1, "leaf": 1, "spine": 0}
    assert s["spread"]["placement"]["runs"]["spine"] == 1
    assert s["spread"]["placement"]["mean_slowdown"] == pytest.approx(1.5)


def test_pack_prefers_the_fullest_node_that_fits(tmp_path):
    # node 0 keeps 1 GPU free after a 3-GPU job; the next 1-GPU job fills it rather than a fresh node
    trace = write(tmp_path, [(0, 0, 1000, 3, "a"), (1, 1, 100, 1, "b"), (2, 2, 100, 1, "c")])
    result = labsim.run(experiment(trace, {"pack": {"scheduler": {"type": "fifo"}},
                                           "spread": {"scheduler": {"type": "fifo"}, "placement": "spread"}}))
    assert attempts(result, "pack")["1"]["nodes"] == "0:1"
    assert attempts(result, "spread")["1"]["nodes"] == "1:1"


def test_fragmentation_is_the_share_of_free_gpu_time_on_partly_busy_nodes(tmp_path):
    # one node of 4 GPUs: a 1-GPU job (100 s) and a 2-GPU job (200 s) from time 0
    one = dict(LEAVES, nodes=1, nodes_per_leaf=1)
    trace = write(tmp_path, [(0, 0, 100, 1, "a"), (1, 0, 200, 2, "b")])
    s = labsim.run(experiment(trace, {"fifo": {"scheduler": {"type": "fifo"}}}, one)).summary["frameworks"]["fifo"]
    # 0–100 s: 1 free of 4, stranded; 100–200 s: 2 free, stranded → 1.0
    assert s["placement"]["fragmentation"] == pytest.approx(1.0)
    trace = write(tmp_path, [(0, 0, 100, 4, "a"), (1, 100, 100, 2, "b")])
    s = labsim.run(experiment(trace, {"fifo": {"scheduler": {"type": "fifo"}}}, one)).summary["frameworks"]["fifo"]
    # 0–100 s nothing free; 100–200 s 2 free on a half-busy node
    assert s["placement"]["fragmentation"] == pytest.approx(1.0)


def test_a_job_spread_over_more_nodes_than_it_needs_runs_at_gavels_unconsolidated_throughput(tmp_path):
    job_type = "ResNet-50 (batch size 64)"
    rows = [(0, 0, 1000, 2, "a", ""), (1, 0, 1000, 2, "a", ""), (2, 0, 1000, 2, "a", ""),
            (3, 0, 1000, 1, "a", ""), (4, 1, 100, 4, "b", job_type)]
    # nodes 0–2 keep 2, 2 and 1 GPUs... the 4-GPU job cannot have one node: it spans two
    trace = write(tmp_path, rows, "job_id,submit_time_s,duration_s,num_gpus,user,job_type")
    topo = dict(LEAVES, nodes=2, nodes_per_leaf=2)
    cfg = {"scheduler": {"type": "fifo"}, "placement": "spread", "throughputs": "builtin:gavel",
           "gpu_types": [{"name": "v100", "nodes": 2}]}
    run = attempts(labsim.run(experiment(trace, {"spread": cfg}, topo)), "spread")["4"]
    packed, spread = gavel_row("v100", job_type, 4)
    assert run["locality"] == "leaf" and len(run["nodes"].split()) == 2
    assert float(run["speed"]) == pytest.approx(spread / packed)


def test_a_model_given_job_across_leaves_is_priced_by_labsim_training_on_that_shape(tmp_path):
    from labsim_training import estimate

    header = "job_id,submit_time_s,duration_s,num_gpus,user,model,steps,seq_len,global_batch_size"
    rows = [(0, 0, 10000, 8, "a", "", "", "", ""), (1, 0, 10000, 8, "a", "", "", "", ""),
            (2, 0, 10000, 8, "a", "", "", "", ""),
            (3, 1, "", 16, "b", "GPT-2-Large", 100, 1024, 128)]
    topo = {"type": "dgx-a100", "nodes": 6, "nodes_per_leaf": 2, "fabric": "fat-tree", "oversubscription": 4}
    exp = experiment(write(tmp_path, rows, header), {
        "pack": {"scheduler": {"type": "fifo"}},
        "spread": {"scheduler": {"type": "fifo"}, "placement": "spread"}}, topo)
    exp["workload"]["predict"] = {"framework": "fsdp", "config": {"micro_batch_size": 8}}
    result = labsim.run(exp)
    pack, spread = attempts(result, "pack")["3"], attempts(result, "spread")["3"]
    assert pack["locality"] == "leaf" and float(pack["speed"]) == pytest.approx(1.0)
    assert spread["locality"] == "spine"
    base = dict(topo)
    base.pop("type")

    def it(**shape):
        t = {"type": "dgx-a100", **base, **shape}
        return estimate("GPT-2-Large", framework="fsdp", config={"micro_batch_size": 8}, device="A100-SXM4-80GB",
                        topology=t, seq_len=1024, global_batch_size=128, gpus=16)["iteration_time_s"]

    assert float(spread["speed"]) == pytest.approx(it() / it(nodes=2, nodes_per_leaf=1), rel=1e-9)
    assert float(spread["speed"]) < 1.0


# -- GPU types --------------------------------------------------------------------------------------

def test_a_job_on_a_slower_type_runs_at_its_measured_throughput(tmp_path):
    job_type = "ResNet-50 (batch size 64)"
    trace = write(tmp_path, [(i, 0, 1000, 1, "a", job_type) for i in range(8)],
                  "job_id,submit_time_s,duration_s,num_gpus,user,job_type")
    topo = dict(LEAVES, nodes=2)
    cfg = {"scheduler": {"type": "fifo"}, "throughputs": "builtin:gavel", "reference_type": "v100",
           "gpu_types": [{"name": "k80", "nodes": 1, "price_per_gpu_hour": 0.45},
                         {"name": "v100", "nodes": 1, "price_per_gpu_hour": 2.48}]}
    result = labsim.run(experiment(trace, {"fifo": cfg}, topo))
    runs = attempts(result, "fifo").values()
    k80 = [r for r in runs if r["gpu_type"] == "k80"]
    v100 = [r for r in runs if r["gpu_type"] == "v100"]
    assert len(k80) == len(v100) == 4
    ratio = gavel_row("k80", job_type, 1)[0] / gavel_row("v100", job_type, 1)[0]
    for r in k80:
        assert float(r["end_s"]) - float(r["start_s"]) == pytest.approx(1000 / ratio)
    s = result.summary["frameworks"]["fifo"]
    held_h = s["makespan_h"] * 4
    assert s["cost"]["usd"] == pytest.approx(held_h * (0.45 + 2.48))
    assert s["gpu_types"]["v100"]["utilisation"] == pytest.approx(1000 / (1000 / ratio))


def test_a_job_type_that_runs_on_no_type_exits_2(tmp_path):
    # Gavel measured 0 steps/s for ResNet-50 at batch 128 on 8 K80s (it does not fit); the
    # cluster's V100s are too few for 8 GPUs
    trace = write(tmp_path, [(0, 0, 100, 8, "a", "ResNet-50 (batch size 128)")],
                  "job_id,submit_time_s,duration_s,num_gpus,user,job_type")
    exp = experiment(trace, {"fifo": {"scheduler": {"type": "fifo"}, "throughputs": "builtin:gavel",
                                      "gpu_types": [{"name": "v100", "nodes": 1}, {"name": "k80", "nodes": 3}]}})
    with pytest.raises(labsim.errors.UsageError, match="runs on no GPU type"):
        labsim.run(exp)


@pytest.mark.parametrize("cfg, table, message", [
    ({"gpu_types": [{"name": "v100", "nodes": 3}]}, None, "gpu_types add up to 3 nodes; the topology has 4"),
    ({"gpu_types": [{"name": "v100", "nodes": 4}], "reference_type": "h100"}, None,
     "reference_type 'h100' is not one of gpu_types"),
    ({"throughputs": "t.csv"}, "gpu_type,job_type,num_gpus,steps_per_s\nv100,x,1,fast\n",
     "t.csv line 2, column steps_per_s: 'fast' is not a number"),
    ({"throughputs": "t.csv"}, "gpu_type,job_type,steps_per_s\n", "t.csv has no column num_gpus"),
])
def test_bad_gpu_types_and_throughput_tables_exit_2(tmp_path, cfg, table, message):
    if table is not None:
        (tmp_path / "t.csv").write_text(table)
    exp = experiment(write(tmp_path, [(0, 0, 10, 1, "a")]), {"fifo": {"scheduler": {"type": "fifo"}, **cfg}})
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


# -- Gavel ------------------------------------------------------------------------------------------

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None,
                                 reason="the gavel scheduler needs labsim-cluster[gavel] (SciPy)")


def two_types(tmp_path, n=4, duration=3600):
    # Recommendation runs fastest on P100 (slower on V100); ResNet-50 runs fastest on V100
    rows = [(i, 0, duration, 1, f"u{i % 2}", "Recommendation (batch size 512)" if i % 2 else
             "ResNet-50 (batch size 64)") for i in range(2 * n)]
    trace = write(tmp_path, rows, "job_id,submit_time_s,duration_s,num_gpus,user,job_type")
    types = [{"name": "p100", "nodes": 1}, {"name": "v100", "nodes": 1}]
    return trace, types


@needs_scipy
def test_gavel_puts_each_job_type_on_the_gpu_it_runs_fastest_on(tmp_path):
    trace, types = two_types(tmp_path)
    cfg = {"throughputs": "builtin:gavel", "gpu_types": types, "reference_type": "v100"}
    exp = experiment(trace, {"fifo": {"scheduler": {"type": "fifo"}, **cfg},
                             "gavel": {"scheduler": {"type": "gavel", "objective": "max_total_throughput"},
                                       **cfg}}, dict(LEAVES, nodes=2))
    result = labsim.run(exp)
    gavel = [r for r in result.table("attempts") if r["policy"] == "gavel"]
    for r in gavel:
        want = "p100" if int(r["job_id"]) % 2 else "v100"
        assert r["gpu_type"] == want, r
    s = result.summary["frameworks"]
    assert s["gavel"]["jct_h"]["mean"] < s["fifo"]["jct_h"]["mean"]


@needs_scipy
def test_gavel_max_min_fairness_equalises_normalised_throughput(tmp_path):
    from labsim_cluster.gavel import Gavel

    trace, types = two_types(tmp_path, n=8)
    cfg = {"throughputs": "builtin:gavel", "gpu_types": types, "reference_type": "v100",
           "scheduler": {"type": "gavel"}}
    exp = experiment(trace, {"gavel": cfg}, dict(LEAVES, nodes=2))
    result = labsim.run(exp)
    s = result.summary["frameworks"]["gavel"]
    assert s["jobs"]["finished"] == 16
    # the allocation itself: 16 jobs share 8 GPUs; every job gets the same normalised throughput
    cluster = type("C", (), {})()
    from labsim_cluster.jobs import Job
    from labsim_cluster.placement import Nodes
    from labsim_cluster.rates import Rates, read_throughputs

    cluster.nodes = Nodes(2, 4, 2, [("p100", 1), ("v100", 1)])
    cluster.rates = Rates(cluster.nodes, 4, types, 1, read_throughputs("builtin:gavel", None), {}, None)
    jobs = [Job(str(i), 1, 100.0, 0.0, kind="Recommendation (batch size 512)" if i % 2 else
                "ResNet-50 (batch size 64)") for i in range(16)]
    policy = Gavel({"type": "gavel"}, None)
    policy.cluster = cluster
    x = policy._allocate(jobs)
    r = [[cluster.rates.type_speed(j, t) for t in (0, 1)] for j in jobs]
    equal = [(a * 4 + b * 4) / 8 for a, b in r]
    norm = [(x[id(j)][0] * r[i][0] + x[id(j)][1] * r[i][1]) / equal[i] for i, j in enumerate(jobs)]
    # 16 one-GPU jobs on 8 GPUs: an equal, type-blind share is half of each job's cluster-average speed;
    # sending each job type to the GPU it runs best on lifts every job above that, the same for all
    assert min(norm) > 0.5 * 1.2
    assert max(norm) / min(norm) < 1.001
    for j in jobs:
        assert sum(x[id(j)]) <= 1 + 1e-9

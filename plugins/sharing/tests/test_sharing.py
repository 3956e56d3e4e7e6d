"""labsim-sharing: the fluid core, the three modes, MIG layouts, and runs end to end."""

from __future__ import annotations

import copy
import json

import labsim
import pytest
import simpy
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.cli import cli
from labsim.errors import LabsimError
from labsim_sharing.fluid import FluidGpu
from labsim_sharing.mig import MIG_PROFILES, mig_instance_device, place
from labsim_sharing.modes import Mps


# -- the fluid core ---------------------------------------------------------------------------------

def _fair(pieces):
    return [1.0 / len(pieces)] * len(pieces)


def test_two_equal_pieces_sharing_half_and_half_finish_together():
    env = simpy.Environment()
    gpu = FluidGpu(env, _fair)
    a, b = gpu.submit("a", 1.0, 0.0), gpu.submit("b", 1.0, 0.0)
    env.run()
    assert a.value == pytest.approx(2.0) and b.value == pytest.approx(2.0)


def test_a_late_piece_slows_the_running_one_from_its_arrival_on():
    env = simpy.Environment()
    gpu = FluidGpu(env, _fair)
    first = gpu.submit("a", 1.0, 0.0)
    env.run(until=0.5)
    second = gpu.submit("b", 0.25, 0.0)
    env.run()
    assert second.value == pytest.approx(1.0)          # 0.25 s of work at half speed
    assert first.value == pytest.approx(1.25)          # 0.5 alone + 0.25 shared over 0.5 s + 0.25 alone


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0.001, 2), st.floats(0, 1)), min_size=1, max_size=12))
def test_every_piece_finishes_exactly_once_and_shares_never_exceed_the_gpu(jobs):
    env = simpy.Environment()
    mode = Mps.__new__(Mps)
    mode.sm_of_membound, mode.caps, mode._solved = 0.5, {}, {}
    seen = []

    def rates(pieces):
        r = mode._rates(pieces)
        sm = sum(x * ((1 - p.membound) + p.membound * 0.5) for x, p in zip(r, pieces))
        bw = sum(x * p.membound for x, p in zip(r, pieces))
        seen.append((sm, bw, r))
        return r

    gpu = FluidGpu(env, rates)
    done = []

    def job(at, seconds, mb, k):
        yield env.timeout(at)
        yield gpu.submit(f"t{k}", seconds, mb)
        done.append(k)

    for k, (at, seconds, mb) in enumerate(jobs):
        env.process(job(at, seconds, mb, k))
    env.run()
    assert sorted(done) == list(range(len(jobs)))
    for sm, bw, r in seen:
        assert sm <= 1 + 1e-9 and bw <= 1 + 1e-9 and all(0 < x <= 1 + 1e-12 for x in r)


# -- MPS shares ---------------------------------------------------------------------------------------

def _mps_rates(membounds, caps=None):
    from labsim_sharing.fluid import Piece

    mode = Mps.__new__(Mps)
    mode.sm_of_membound, mode.caps, mode._solved = 0.5, caps or {}, {}
    return mode._rates([Piece(f"t{i}", 1.0, mb, None) for i, mb in enumerate(membounds)])


def test_mps_overlaps_a_compute_bound_and_a_memory_bound_tenant():
    both_compute = _mps_rates([0.0, 0.0])
    mixed = _mps_rates([0.0, 1.0])
    assert both_compute == pytest.approx([0.5, 0.5])    # one resource: halves
    assert sum(mixed) > 1.3                              # the two resources overlap
    assert _mps_rates([1.0, 1.0]) == pytest.approx([0.5, 0.5])  # bandwidth: halves


def test_mps_thread_percentage_caps_a_tenants_sms():
    assert _mps_rates([0.0], {"t0": 0.3}) == pytest.approx([0.3])
    capped = _mps_rates([0.0, 0.0], {"t0": 0.2})
    assert capped == pytest.approx([0.2, 0.8])          # the other takes what is left


# -- MIG ----------------------------------------------------------------------------------------------

def test_mig_layouts_follow_the_user_guide_placements():
    t = MIG_PROFILES["A100-SXM4-80GB"]
    assert place([t["3g.40gb"], t["3g.40gb"]]) is not None
    assert place([t["4g.40gb"], t["3g.40gb"]]) is not None
    assert place([t["1g.10gb"]] * 7) is not None
    assert place([t["1g.10gb"]] * 8) is None                  # 7 compute slices
    assert place([t["3g.40gb"]] * 3) is None
    assert place([t["4g.40gb"], t["4g.40gb"]]) is None        # one 4g per GPU
    assert place([t["2g.20gb"]] * 3 + [t["1g.10gb"]]) is not None


def test_a_mig_instance_is_a_smaller_device():
    gpu = labsim.device("H100-SXM")
    slice3 = mig_instance_device(gpu, MIG_PROFILES["H100-SXM"]["3g.40gb"])
    assert slice3.sm_count == 60 and slice3.memory_bytes == gpu.memory_bytes // 2
    assert slice3.mem_bw == pytest.approx(gpu.mem_bw / 2)
    ratio = slice3.gemm_time(8192, 8192, 8192) / gpu.gemm_time(8192, 8192, 8192)
    assert ratio == pytest.approx(132 / 60, rel=0.05)          # a big GEMM scales with the SMs


# -- end to end ---------------------------------------------------------------------------------------

EXPERIMENT = {
    "name": "two-chat-servers",
    "simulation": {"max_simulation_time": 300, "random_seed": 7},
    "hardware_profile": {"device": "A100-SXM4-80GB", "sharing": {"type": "mps"}},
    "workload": {"type": "client_profiles", "total_duration": 10, "client_profiles": [{
        "profile_name": "chat", "weight": 1.0, "request_rate": 2.0,
        "prompt_tokens_dist_config": {"type": "Constant", "value": 400},
        "max_output_tokens_dist_config": {"type": "Constant", "value": 100}}]},
    "frameworks_to_test": [
        {"name": "a", "type": "vllm", "placement": {"gpu": "gpu0"},
         "config": {"model": "Llama-3.1-8B", "gpu_memory_utilization": 0.45, "max_model_len": 8192}},
        {"name": "b", "type": "vllm", "placement": {"gpu": "gpu0"},
         "config": {"model": "Llama-3.1-8B", "gpu_memory_utilization": 0.45, "max_model_len": 8192}},
    ],
}


def _run(mode: str, **placement) -> dict:
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": mode}
    for fw in exp["frameworks_to_test"]:
        fw["placement"].update(placement)
    return labsim.run(exp).summary


def _alone() -> dict:
    exp = copy.deepcopy(EXPERIMENT)
    exp["frameworks_to_test"] = exp["frameworks_to_test"][:1]
    return labsim.run(exp).summary


def test_two_servers_under_each_mode_against_one_alone():
    alone = _alone()["frameworks"]["a"]["tpot_ms"]["p50"]
    ts = _run("time_slicing")
    mps = _run("mps")
    ts_tpot = ts["frameworks"]["a"]["tpot_ms"]["p50"]
    mps_tpot = mps["frameworks"]["a"]["tpot_ms"]["p50"]
    assert ts_tpot > 1.3 * alone and mps_tpot > alone
    assert mps_tpot < ts_tpot              # concurrent kernels beat taking turns
    sharing = ts["hardware"]["sharing"]["gpu0"]
    assert sharing["mode"] == "time_slicing" and set(sharing["tenants"]) == {"a", "b"}
    assert sharing["tenants"]["a"]["slowdown"] > 1.3


def test_mig_tenants_each_get_an_isolated_instance():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mig"}
    for fw in exp["frameworks_to_test"]:
        fw["placement"]["mig_profile"] = "3g.40gb"
        fw["config"]["gpu_memory_utilization"] = 0.9
    out = labsim.run(exp).summary
    tenants = out["hardware"]["sharing"]["gpu0"]["tenants"]
    assert {t["mig_profile"] for t in tenants.values()} == {"3g.40gb"}
    assert {t["slowdown"] for t in tenants.values()} == {1.0}   # nothing crosses instances
    alone = _alone()["frameworks"]["a"]["tpot_ms"]["p50"]
    assert out["frameworks"]["a"]["tpot_ms"]["p50"] > 1.3 * alone  # 42 of 108 SMs, half the bandwidth


def test_time_slicing_without_memory_isolation_fails_the_tenant_that_no_longer_fits():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "time_slicing"}
    for fw in exp["frameworks_to_test"]:
        fw["config"]["gpu_memory_utilization"] = 0.9
    out = labsim.run(exp).summary
    failure = out["hardware"]["sharing"]["gpu0"]["failures"]
    assert list(failure) == ["b"] and failure["b"]["kind"] == "CUDA OOM"
    assert out["frameworks"]["a"]["requests"]["finished"] > 0
    assert out["frameworks"]["b"]["requests"]["finished"] == 0


def test_an_mps_fault_ends_every_client():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mps", "fault_at_s": 5.0}
    out = labsim.run(exp).summary
    failures = out["hardware"]["sharing"]["gpu0"]["failures"]
    assert set(failures) == {"a", "b"} and all(f["at_s"] == 5.0 for f in failures.values())


@pytest.mark.parametrize("mode, placement, message", [
    ("mig", {"mig_profile": "3g.40gb"}, None),
    ("mps", {"mps_active_thread_percentage": 150}, "placement.mps_active_thread_percentage: 150"),
    ("mig", {"mig_profile": "9g.99gb"}, "offers 1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"),
    ("mig", {"mig_profile": "4g.40gb"}, "does not fit on GPU gpu0 beside a: 4g.40gb; what still fits: "
                                        "1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb"),
])
def test_bad_placements_exit_2_naming_the_field(tmp_path, mode, placement, message):
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": mode}
    for fw in exp["frameworks_to_test"]:
        fw["placement"].update(placement)
        fw["config"]["gpu_memory_utilization"] = 0.9 if mode == "mig" else 0.4
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out")])
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_mig_on_a_gpu_without_mig_is_refused():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"] = {"device": "L40S", "sharing": {"type": "mig"}}
    for fw in exp["frameworks_to_test"]:
        fw["placement"]["mig_profile"] = "1g.10gb"
    with pytest.raises(LabsimError, match="L40S has no MIG; GPUs with MIG: A100-SXM4-40GB"):
        labsim.run(exp)


def test_time_slicing_replicas_bound_the_tenants():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "time_slicing", "replicas": 1}
    with pytest.raises(LabsimError, match="advertised as 1 time-sliced replica"):
        labsim.run(exp)


def test_labsim_sharing_compares_modes_against_each_tenant_alone(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "sharing_mixed_tenants.yaml"
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(cli, ["sharing", str(example), "--modes", "time_slicing,mps,mig",
                                      "--set", "workload.total_duration=10",
                                      "--set", "frameworks_to_test.1.config.job.iterations=50",
                                      "--set", "frameworks_to_test.2.config.job.iterations=50",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "tenant chat" in result.output and "tenant resnet50" in result.output
    data = json.loads(out.read_text())
    bert = data["tenants"]["bert-finetune"]
    it = bert["metrics"]["iteration time (s)"]
    assert it["alone"] < it["mps"] < it["time_slicing"]          # concurrency beats taking turns
    assert bert["gpu"]["mig"]["slowdown"] == pytest.approx(1.0)   # an instance of its own
    assert it["mig"] > it["alone"]                                 # … of 2 of 7 slices
    bad = CliRunner().invoke(cli, ["sharing", str(example), "--modes", "mps,warp"])
    assert bad.exit_code == 2 and "--modes: no sharing mode 'warp'" in bad.output


def test_a_training_job_of_its_own_must_not_also_take_the_workload(tmp_path):
    exp = copy.deepcopy(EXPERIMENT)
    exp["frameworks_to_test"][1] = {"name": "bert", "type": "ddp", "placement": {"gpu": "gpu0"},
                                    "config": {"job": {"model": "BERT-base", "seq_len": 128,
                                                       "global_batch_size": 8, "iterations": 5}}}
    with pytest.raises(LabsimError, match="is_target_for_workload: false"):
        labsim.run(exp)


@pytest.mark.parametrize("mode, setting, value", [
    ("time_slicing", "switch_us", 400.0),
    ("time_slicing", "slice_ms", 0.5),
    ("mps", "memory_bound_sm_share", 0.9),
])
def test_every_mode_setting_changes_the_slowdown(mode, setting, value):
    def slowdown(extra):
        exp = copy.deepcopy(EXPERIMENT)
        exp["hardware_profile"]["sharing"] = {"type": mode, **extra}
        return labsim.run(exp).summary["hardware"]["sharing"]["gpu0"]["tenants"]["a"]["slowdown"]

    assert slowdown({setting: value}) != pytest.approx(slowdown({}), rel=1e-6)


def test_a_notebook_runs_bursts_of_cells_and_waits_longer_beside_a_busy_server():
    exp = copy.deepcopy(EXPERIMENT)
    exp["frameworks_to_test"][1] = {
        "name": "nb", "type": "notebook", "is_target_for_workload": False, "placement": {"gpu": "gpu0"},
        "config": {"model": "BERT-base", "cell": "forward", "batch_size": 32, "seq_len": 256,
                   "cells_per_burst_dist_config": {"type": "Constant", "value": 3},
                   "think_time_dist_config": {"type": "Constant", "value": 2.0},
                   "session_s": 9.0, "cell_slo_ms": 1000}}
    shared = labsim.run(exp).summary["frameworks"]["nb"]
    alone = copy.deepcopy(exp)
    alone["frameworks_to_test"] = alone["frameworks_to_test"][1:]
    nb = labsim.run(alone).summary["frameworks"]["nb"]
    assert nb["cells"] == shared["cells"] == 12                 # 4 bursts of 3 in 9 s
    assert nb["cell_latency_ms"]["p50"] == pytest.approx(nb["cell_alone_ms"])
    assert shared["cell_latency_ms"]["p50"] > nb["cell_latency_ms"]["p50"]
    assert shared["cell_slo_attainment"] == 1.0 and 0 < nb["busy_share"] < 0.5


def test_a_notebook_forward_too_big_for_its_mig_slice_is_refused():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mig"}
    exp["frameworks_to_test"] = [{
        "name": "nb", "type": "notebook", "is_target_for_workload": False,
        "placement": {"gpu": "gpu0", "mig_profile": "1g.10gb"},
        "config": {"model": "Llama-3.1-8B", "cell": "forward", "batch_size": 64, "seq_len": 4096}}]
    exp.pop("workload")
    with pytest.raises(LabsimError, match="nb: a forward pass of batch_size 64 needs"):
        labsim.run(exp)


NOTEBOOK = {"model": "BERT-base", "cell": "forward", "batch_size": 16, "seq_len": 128,
            "cells_per_burst_dist_config": {"type": "Constant", "value": 2},
            "think_time_dist_config": {"type": "Constant", "value": 1.0}, "session_s": 6.0,
            "cell_slo_ms": 1000}


@pytest.mark.parametrize("key, value", [
    ("model", "BERT-large"), ("cell", "training_step"), ("batch_size", 64), ("seq_len", 512),
    ("precision", "fp32"), ("cells_per_burst_dist_config", {"type": "Constant", "value": 4}),
    ("think_time_dist_config", {"type": "Constant", "value": 0.5}), ("session_s", 12.0),
    ("cell_slo_ms", 1e-3),
])
def test_every_notebook_setting_changes_its_summary(key, value):
    def summary(config):
        exp = copy.deepcopy(EXPERIMENT)
        exp.pop("workload")
        exp["frameworks_to_test"] = [{"name": "nb", "type": "notebook", "is_target_for_workload": False,
                                      "placement": {"gpu": "gpu0"}, "config": config}]
        return labsim.run(exp).summary["frameworks"]["nb"]

    assert summary({**NOTEBOOK, key: value}) != summary(NOTEBOOK)


def test_stress_adds_copies_until_the_slo_breaks(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "sharing_stress_chat.yaml"
    out = tmp_path / "stress.json"
    result = CliRunner().invoke(cli, ["sharing", str(example), "--modes", "time_slicing,mps",
                                      "--stress", "chat", "--slo", "tpot_ms.p99<=20", "--max-tenants", "4",
                                      "--set", "workload.total_duration=15", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for mode in ("time_slicing", "mps"):
        r = data["modes"][mode]
        worst = [s["worst"] for s in r["steps"]]
        assert worst == sorted(worst)                     # more tenants, slower decode
        assert r["capacity"] == len(r["steps"]) - 1 >= 1 and r["usd_per_1000_at_capacity"] > 0
        assert r["steps"][-1]["meets_slo"] is False
    bad = CliRunner().invoke(cli, ["sharing", str(example), "--stress", "chat", "--slo", "fast please"])
    assert bad.exit_code == 2 and "--slo: 'fast please'; allowed:" in bad.output


def test_the_gpu_sharing_timeline_records_shares_in_use(tmp_path):
    import csv

    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mps", "record_timeline": True}
    labsim.run(exp, out=tmp_path / "out")
    with open(tmp_path / "out" / "gpu_sharing.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["gpu"] for r in rows} == {"gpu0"}
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    assert max(int(r["tenants_running"]) for r in rows) == 2
    assert all(0 <= float(r["sm_share"]) <= 1 and 0 <= float(r["bandwidth_share"]) <= 1 for r in rows)
    assert float(rows[-1]["memory_gib"]) == pytest.approx(2 * 0.45 * 79.2, rel=0.01)


def test_an_mps_client_past_its_pinned_memory_limit_fails_alone():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mps"}
    a, b = exp["frameworks_to_test"]
    a["config"]["gpu_memory_utilization"] = b["config"]["gpu_memory_utilization"] = 0.4
    b["placement"]["mps_pinned_device_mem_limit_gib"] = 8      # b asks for 0.4 × 80 GB
    a["placement"]["mps_pinned_device_mem_limit_gib"] = 40
    out = labsim.run(exp).summary
    failures = out["hardware"]["sharing"]["gpu0"]["failures"]
    assert list(failures) == ["b"] and failures["b"]["kind"] == "CUDA OOM"
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" in failures["b"]["detail"]
    assert out["frameworks"]["a"]["requests"]["finished"] > 0
    # the same file without b's limit: both fit
    del b["placement"]["mps_pinned_device_mem_limit_gib"]
    assert not labsim.run(exp).summary["hardware"]["sharing"]["gpu0"].get("failures")


def test_a_bad_mps_memory_limit_exits_2():
    exp = copy.deepcopy(EXPERIMENT)
    exp["hardware_profile"]["sharing"] = {"type": "mps"}
    exp["frameworks_to_test"][0]["placement"]["mps_pinned_device_mem_limit_gib"] = -1
    with pytest.raises(labsim.LabsimError, match="mps_pinned_device_mem_limit_gib"):
        labsim.run(exp)

"""Experiment kinds beyond serving on the kernel's contracts, end to end through `labsim run`:
a training framework, a cluster framework nesting a scheduler, a sharing mode, GPUs as an
allocatable resource, work-item kinds, and per-framework accounting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import kinds_test_plugin  # noqa: E402
from labsim import cli as cli_mod  # noqa: E402
from labsim.testing import make_registry  # noqa: E402

TRAIN = """\
name: toy-train
hardware_profile: {{device: H100-SXM{hw}}}
workload: {{type: toy_training_job, iterations: 3}}
frameworks_to_test:
{frameworks}
"""


@pytest.fixture(scope="module")
def registry():
    return make_registry(kinds_test_plugin, load_entrypoints=True)


@pytest.fixture
def labsim_cli(registry, monkeypatch, tmp_path):
    monkeypatch.setattr(cli_mod, "get_registry", lambda: registry)

    def run(text: str, *args):
        path = tmp_path / "exp.yaml"
        path.write_text(text)
        out = tmp_path / "out"
        result = CliRunner().invoke(cli_mod.cli, ["run", str(path), "--out", str(out), *args])
        summary = json.loads((out / "summary.json").read_text()) if result.exit_code == 0 else None
        return result, summary

    return run


def test_a_training_framework_runs_and_is_billed_by_the_kernel(labsim_cli):
    result, summary = labsim_cli(TRAIN.format(hw="", frameworks="  - {name: ddp, type: toy_trainer, "
                                                                 "config: {gpus: 4}}"))
    assert result.exit_code == 0, result.output
    ddp = summary["frameworks"]["ddp"]
    assert ddp["iterations"] == 3 and ddp["iteration_time_s"] > 0
    assert ddp["cost"]["num_gpus"] == 4
    # billed for its own 4 GPUs over its own time, at the H100's price per hour
    assert ddp["cost"]["usd"] == pytest.approx(4 * 3 * ddp["iteration_time_s"] * ddp["cost"]["usd_per_hour"]
                                               / 4 / 3600, rel=1e-9)


def test_tenants_sharing_a_gpu_take_turns_under_a_sharing_mode(labsim_cli):
    alone, s1 = labsim_cli(TRAIN.format(hw="", frameworks="  - {name: a, type: toy_trainer}"))
    fws = ("  - {name: a, type: toy_trainer, placement: {gpus: [gpu0]}}\n"
           "  - {name: b, type: toy_trainer, placement: {gpus: [gpu0]}}")
    shared, s2 = labsim_cli(TRAIN.format(hw=", sharing: {type: toy_time_slicing}", frameworks=fws))
    assert alone.exit_code == 0 and shared.exit_code == 0, shared.output
    solo = s1["frameworks"]["a"]["iteration_time_s"]
    # two tenants alternating on one GPU (T = one iteration alone): a runs 0→T, then waits
    # for b each time (T→3T, 3T→5T); b waits for a every time (0→2T, 2T→4T, 4T→6T)
    assert s2["frameworks"]["a"]["iteration_time_s"] == pytest.approx(5 / 3 * solo, rel=1e-9)
    assert s2["frameworks"]["b"]["iteration_time_s"] == pytest.approx(2 * solo, rel=1e-9)


def test_exclusive_use_refuses_two_tenants_on_one_gpu(labsim_cli):
    fws = ("  - {name: a, type: toy_trainer, placement: {gpus: [gpu0]}}\n"
           "  - {name: b, type: toy_trainer, placement: {gpus: [gpu0]}}")
    result, _ = labsim_cli(TRAIN.format(hw="", frameworks=fws))
    assert result.exit_code == 2
    assert "GPU gpu0 is placed under both 'a' and 'b'" in result.output
    assert "Traceback" not in result.output


def test_a_cluster_framework_nests_a_scheduler_block(labsim_cli):
    text = """\
hardware_profile: {device: A100-SXM4-80GB}
workload: {type: toy_jobs, jobs: [{gpus: 6, duration_s: 10}, {gpus: 4, duration_s: 5}, {gpus: 2, duration_s: 5}]}
frameworks_to_test:
  - {name: fifo, type: toy_cluster, config: {gpus: 8, scheduler: {type: toy_fifo}}}
"""
    result, summary = labsim_cli(text)
    assert result.exit_code == 0, result.output
    fifo = summary["frameworks"]["fifo"]
    # strict FIFO: the 4-GPU job waits for the 6-GPU one; the 2-GPU job waits behind it
    assert fifo["jobs_finished"] == 3 and fifo["makespan_s"] == pytest.approx(15.0)
    bad, _ = labsim_cli(text.replace("type: toy_fifo", "type: toy_fif"))
    assert bad.exit_code == 2
    assert "frameworks_to_test[0].config.scheduler.type: No scheduler named 'toy_fif'" in bad.output
    assert "Did you mean 'toy_fifo'?" in bad.output


def test_a_framework_refuses_work_items_it_does_not_take(labsim_cli):
    text = """\
hardware_profile: {device: H100-SXM}
workload: {type: toy_jobs, jobs: [{gpus: 1, duration_s: 1}]}
frameworks_to_test:
  - {name: ddp, type: toy_trainer}
"""
    result, _ = labsim_cli(text)
    assert result.exit_code == 2
    assert ("frameworks_to_test[0].type: framework 'toy_trainer' takes training jobs; workload 'toy_jobs' "
            "makes cluster jobs") in result.output


def test_more_gpus_than_the_topology_has_is_refused_naming_the_counts(labsim_cli):
    text = """\
hardware_profile: {topology: dgx-h100}
workload: {total_duration: 1, client_profiles: [{profile_name: c, inter_arrival_time_dist_config: {type: Constant, value: 1}, prompt_tokens_dist_config: {type: Constant, value: 100}, max_output_tokens_dist_config: {type: Constant, value: 10}}]}
frameworks_to_test:
  - {name: v, type: vllm, config: {model: Llama-3.1-8B, tensor_parallel_size: 8, num_replicas: 8}}
"""
    result, _ = labsim_cli(text)
    assert result.exit_code == 2, result.output
    assert ("'v' needs 64 GPUs (num_replicas 8 × tensor_parallel_size 8 × pipeline_parallel_size 1), but "
            "topology 'dgx-h100' has 8 (1 node(s) × 8)") in result.output


def test_side_by_side_frameworks_are_each_billed_for_their_own_time(labsim_cli, root):
    """fifo_vs_vllm: vLLM beside a slower framework costs what it costs alone (it was billed for
    the whole experiment, so side-by-side costs were equal by construction)."""
    from ruamel.yaml import YAML

    text = (root / "examples" / "fifo_vs_vllm.yaml").read_text()
    _, both = labsim_cli(text)
    data = YAML(typ="safe").load(text)
    data["frameworks_to_test"] = [f for f in data["frameworks_to_test"] if f["type"] == "vllm"]
    _, alone = labsim_cli(json.dumps(data))
    assert both is not None and alone is not None
    assert both["frameworks"]["vllm"]["cost"]["usd_total"] == pytest.approx(
        alone["frameworks"]["vllm"]["cost"]["usd_total"], rel=1e-12)
    assert both["simulated_time_s"] > alone["simulated_time_s"]  # the fifo framework ran longer


def test_a_framework_finds_its_client_link():
    from labsim.hardware import Hardware

    def links(*dests):
        return [{"link_id": f"l{i}", "dest_id": d, "bandwidth_bps": 1e9, "latency_s": 0.001 * (i + 1)}
                for i, d in enumerate(dests)]

    hw = Hardware({}, links=links("entry"))
    hw.framework_names = {"vllm", "trt"}
    assert hw.link_to("vllm").link_id == "l0" and hw.link_to("trt").link_id == "l0"  # one shared entry
    hw = Hardware({}, links=links("vllm", "entry"))
    hw.framework_names = {"vllm", "trt"}
    assert hw.link_to("vllm").link_id == "l0" and hw.link_to("trt").link_id == "l1"
    hw = Hardware({}, links=links("a", "b"))
    hw.framework_names = {"vllm"}
    assert hw.link_to("vllm") is None  # two entry points: which one is not said
    assert hw.links["l0"].transfer_s(1e9 / 8) == pytest.approx(1.001)


SERVE = """\
hardware_profile: {{device: H100-SXM{hw}}}
workload: {{total_duration: 20, client_profiles: [{{profile_name: c, inter_arrival_time_dist_config: {{type: Exponential, rate: 4}}, prompt_tokens_dist_config: {{type: Constant, value: 512}}, max_output_tokens_dist_config: {{type: Constant, value: 128}}}}]}}
frameworks_to_test:
{frameworks}
"""


def test_serving_engines_run_their_steps_through_the_gpus_execution_point(labsim_cli):
    """Two vLLM tenants on one GPU under a sharing mode take turns: each step waits for the
    other's, so both serve slower than alone, and fast-forward stays off while they share."""
    alone, s1 = labsim_cli(SERVE.format(hw="", frameworks="  - {name: a, type: vllm, config: {model: "
                                                          "Llama-3.1-8B}}"))
    fws = ("  - {name: a, type: vllm, config: {model: Llama-3.1-8B}, placement: {gpus: [gpu0]}}\n"
           "  - {name: b, type: trtllm, config: {model: Llama-3.1-8B}, placement: {gpus: [gpu0]}}")
    shared, s2 = labsim_cli(SERVE.format(hw=", sharing: {type: toy_time_slicing}", frameworks=fws))
    assert alone.exit_code == 0 and shared.exit_code == 0, shared.output
    solo = s1["frameworks"]["a"]["tpot_ms"]["p50"]
    assert s2["frameworks"]["a"]["tpot_ms"]["p50"] > 1.3 * solo
    assert s2["frameworks"]["a"]["requests"]["finished"] == s1["frameworks"]["a"]["requests"]["finished"]
    # alone on its placed GPU, exclusive use gives the same answer as no placement
    _, s3 = labsim_cli(SERVE.format(hw="", frameworks="  - {name: a, type: vllm, config: {model: "
                                                      "Llama-3.1-8B}, placement: {gpus: [gpu0]}}"))
    assert s3["frameworks"]["a"]["tpot_ms"] == s1["frameworks"]["a"]["tpot_ms"]

"""``labsim scale --search``: every parallel layout per size, the best, the smallest cluster."""

from __future__ import annotations

import json
from pathlib import Path

import labsim
import pytest
from click.testing import CliRunner
from labsim.cli import cli
from labsim.orchestrator import load_experiment
from labsim_training.layout_search import megatron_layouts, other_layouts, search_layouts

ROOT = Path(__file__).resolve().parents[3]
MEDIUM = ROOT / "examples" / "training_medium_32gpu.yaml"
GPT2XL = labsim.get_registry().get("models", "GPT-2-XL")


def test_megatron_layouts_respect_the_model_the_node_and_the_batch():
    groups = megatron_layouts(GPT2XL, gpus=32, per_node=8, global_batch=512, base={"distributed_optimizer": True})
    assert groups
    for (tp, pp, recompute), configs in groups.items():
        assert tp <= 8 and GPT2XL.num_attention_heads % tp == 0
        assert GPT2XL.num_layers % pp == 0 and 32 % (tp * pp) == 0
        dp = 32 // (tp * pp)
        for cfg in configs:
            assert (512 // dp) % cfg["micro_batch_size"] == 0
            assert cfg["sequence_parallel"] == (tp > 1) and cfg["recompute"] == recompute
            assert cfg["distributed_optimizer"] is True          # the file's other settings stay
        sizes = [c["micro_batch_size"] for c in configs]
        assert sizes == sorted(sizes)                             # ascending: pruning relies on it


def test_other_frameworks_vary_their_sharding_and_micro_batch():
    ds = other_layouts("deepspeed", 32, 512, {"zero_stage": 2})
    assert {k[1] for k in ds} == {1, 2, 3}
    fsdp = other_layouts("fsdp", 32, 512, {})
    assert {k[1] for k in fsdp} == {"full_shard", "shard_grad_op", "no_shard"}
    assert other_layouts("ddp", 48, 512, {}) == {}                # 512 does not split over 48 GPUs


@pytest.fixture(scope="module")
def result():
    from labsim_training import layout_search

    with pytest.MonkeyPatch.context() as mp:   # fewer layouts: the test is about the ranking
        mp.setattr(layout_search, "MICRO_BATCHES", (2, 8))
        mp.setattr(layout_search, "TENSOR_PARALLEL", (1, 2))
        return _search()


def _search():
    exp = load_experiment(str(MEDIUM), ["frameworks_to_test=" + json.dumps([
        {"name": "megatron", "type": "megatron", "config": {"distributed_optimizer": True}},
        {"name": "zero", "type": "deepspeed", "config": {}}])])
    return search_layouts(exp, [16, 32], train_tokens=2e10, budget_hours=15, workers=1)


def test_the_best_layout_is_the_fastest_one_that_ran(result):
    for row in result["sizes"]:
        assert row["ran"] >= 1 and row["best"] == row["top"][0]
        times = [t["iteration_time_s"] for t in row["top"]]
        assert times == sorted(times)
        assert row["hours_to_train"] == pytest.approx(2e10 / row["best"]["tokens_per_s"] / 3600)
    # the best layout, run as an ordinary experiment, gives the same iteration time
    row = next(r for r in result["sizes"] if r["framework"] == "megatron" and r["gpus"] == 32)
    summary = labsim.run(str(MEDIUM), overrides=[
        "frameworks_to_test=" + json.dumps([{"name": "m", "type": "megatron", "config": row["best"]["config"]}]),
        "workload.iterations=1"]).summary
    assert summary["frameworks"]["m"]["iteration_time_s"] == pytest.approx(row["best"]["iteration_time_s"])


def test_the_smallest_cluster_meeting_the_budget(result):
    best = result["smallest_meeting_budget"]
    assert best is not None and best["hours_to_train"] <= 15
    assert all(not r.get("meets_budget") for r in result["sizes"] if r["gpus"] < best["gpus"])


def test_out_of_memory_stops_larger_micro_batches_of_the_same_layout():
    from labsim_training.layout_search import _run_group
    from labsim_training.scale import sized

    exp = load_experiment(str(MEDIUM), ["hardware_profile.device=A100-SXM4-40GB",
                                        "workload.seq_len=4096", "workload.global_batch_size=512"])
    data = sized(exp.data, 8, 8, "strong")
    entry = {"name": "m", "type": "megatron", "config": {}}
    (configs,) = [c for (tp, pp, rc), c in megatron_layouts(GPT2XL, 8, 8, 512, {}).items()
                  if (tp, pp, rc) == (1, 1, "none")]
    assert [c["micro_batch_size"] for c in configs] == [1, 2, 4, 8]
    out = _run_group({"data": data, "entry": entry, "configs": configs, "source": "t", "base_dir": None})
    assert "out of memory" in out[-1]["error"]
    assert len(out) < len(configs)        # the larger micro-batches were not run


def test_the_command_prints_the_search_and_writes_json(tmp_path):
    out = tmp_path / "layouts.json"
    result = CliRunner().invoke(cli, ["scale", str(MEDIUM), "--gpus", "16", "--search", "--workers", "1",
                                      "--train-tokens", "1e10", "--budget-hours", "100",
                                      "--set", "frameworks_to_test=" + json.dumps(
                                          [{"name": "ddp", "type": "ddp", "config": {}}]),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "best layout per size by iteration time" in result.output
    assert "smallest cluster meeting 100 h: 16 GPUs" in result.output
    assert json.loads(out.read_text())["sizes"][0]["gpus"] == 16


@pytest.mark.parametrize("args,message", [
    (["--budget-hours", "5"], "go with --search"),
    (["--search", "--budget-hours", "5"], "--budget-hours needs --train-tokens"),
    (["--search", "--objective", "speed"], "speed"),
])
def test_bad_search_arguments_exit_2(args, message):
    result = CliRunner().invoke(cli, ["scale", str(MEDIUM), "--gpus", "16", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output

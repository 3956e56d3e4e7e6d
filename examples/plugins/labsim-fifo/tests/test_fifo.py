"""labsim-fifo: registration, pricing through the cost model, and an end-to-end run."""

from __future__ import annotations

from importlib.metadata import entry_points

import labsim
import labsim_fifo
import labsim_gpus.plugin
import labsim_llm.plugin
import pytest
from labsim.testing import make_registry

EXPERIMENT = {
    "hardware_profile": {"device": "H100-SXM"},
    "workload": {
        "total_duration": 20,
        "client_profiles": [
            {
                "profile_name": "chat",
                "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 1},
                "prompt_tokens_dist_config": {"type": "Constant", "value": 512},
                "max_output_tokens_dist_config": {"type": "Constant", "value": 64},
            }
        ],
    },
    "frameworks_to_test": [{"name": "fifo", "type": "fifo", "config": {"model": "Llama-3.1-8B"}}],
}


@pytest.fixture
def registry():
    return make_registry(labsim_fifo, labsim_gpus.plugin, labsim_llm.plugin)


def test_registers_fifo(registry):
    assert registry.get("frameworks", "FIFO") is labsim_fifo.Fifo


def test_entry_point_is_installed():
    assert "fifo" in {ep.name for ep in entry_points(group="labsim")}


def test_requests_are_served_one_at_a_time(registry):
    result = labsim.run(EXPERIMENT, seed=3, registry=registry)
    rows = sorted(result.table("requests"), key=lambda r: r["first_token_s"])
    assert rows and all(r["status"] == "finished" for r in rows)
    for before, after in zip(rows, rows[1:]):  # no overlap: the next starts after the last ends
        assert after["first_token_s"] > before["finish_s"]
    section = result.summary["frameworks"]["fifo"]
    assert section["requests"]["finished"] == len(rows)
    assert section["tpot_ms"]["p50"] > 0


def test_latencies_come_from_the_cost_model(registry):
    result = labsim.run(EXPERIMENT, seed=3, registry=registry)
    slow = labsim.run(
        EXPERIMENT | {"hardware_profile": {"device": "A100-SXM4-80GB"}}, seed=3, registry=registry
    )
    fast_tpot = result.summary["frameworks"]["fifo"]["tpot_ms"]["p50"]
    slow_tpot = slow.summary["frameworks"]["fifo"]["tpot_ms"]["p50"]
    assert slow_tpot > fast_tpot * 1.3  # A100's HBM is ~1.6x slower than H100's


def test_model_too_large_is_a_clear_error(registry):
    bad = EXPERIMENT | {
        "frameworks_to_test": [{"name": "f", "type": "fifo", "config": {"model": "Llama-3.1-405B"}}]
    }
    with pytest.raises(labsim.ConfigError, match="needs 8.*GB of weights"):
        labsim.run(bad, registry=registry)


def test_fifo_beside_vllm_writes_one_well_formed_requests_csv(tmp_path):
    """examples/fifo_vs_vllm.yaml: fifo's rows carry the same columns as vLLM's (the old plugin
    wrote 11 fields under vLLM's 20-column header: ``replica='finished'``, ``status='0.0047'``)."""
    import csv
    from pathlib import Path

    from click.testing import CliRunner
    from labsim.cli import cli
    from labsim_llm.request import STATUSES

    example = Path(__file__).resolve().parents[4] / "examples" / "fifo_vs_vllm.yaml"
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(example), "--out", str(out),
                                    "--set", "workload.total_duration=8"])
    assert res.exit_code == 0, res.output
    with open(out / "requests.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert {r[header.index("framework")] for r in rows} == {"fifo", "vllm"}
    assert all(len(r) == len(header) for r in rows)
    assert {r[header.index("status")] for r in rows} <= set(STATUSES)


def test_conversations_continue_without_code_of_its_own(registry):
    """Follow-up turns arrive after the previous turn finishes: the shell tells the workload."""
    profile = EXPERIMENT["workload"]["client_profiles"][0] | {
        "conversational_probability": 1.0,
        "think_time_dist_config": {"type": "Exponential", "mean": 0.5},
    }
    exp = EXPERIMENT | {"workload": EXPERIMENT["workload"] | {"client_profiles": [profile]}}
    rows = labsim.run(exp, seed=3, registry=registry).table("requests")
    finished = {(r["session_id"], r["turn"]): r for r in rows if r["status"] == "finished"}
    follow_ups = [r for (s, t), r in finished.items() if t > 0]
    assert follow_ups
    for r in follow_ups:
        assert r["arrival_s"] >= finished[(r["session_id"], r["turn"] - 1)]["finish_s"]


def test_requests_still_inside_at_the_end_are_reported_unfinished(registry):
    profile = EXPERIMENT["workload"]["client_profiles"][0] | {
        "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 20}}
    exp = EXPERIMENT | {"simulation": {"max_simulation_time": 5},
                        "workload": EXPERIMENT["workload"] | {"client_profiles": [profile]}}
    result = labsim.run(exp, seed=3, registry=registry)
    statuses = [r["status"] for r in result.table("requests")]
    assert "unfinished" in statuses and "finished" in statuses
    assert result.summary["frameworks"]["fifo"]["requests"]["unfinished"] == statuses.count("unfinished")


def test_a_request_finished_without_a_first_token_is_an_error(registry, monkeypatch):
    """Not a silently empty TTFT statistic (request times are None until an engine sets them)."""
    monkeypatch.setattr(labsim_fifo.FifoReplica, "emit_token", lambda self, seq, end, first: None)
    with pytest.raises(RuntimeError, match="request 0 finished without first_token_s"):
        labsim.run(EXPERIMENT, seed=3, registry=registry)

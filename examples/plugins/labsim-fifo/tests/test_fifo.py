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

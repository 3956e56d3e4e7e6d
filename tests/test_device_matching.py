"""An experiment that writes out the H100's datasheet runs as one that names the H100."""

from __future__ import annotations

import copy

from labsim.orchestrator import run

BASE = {
    "name": "match",
    "simulation": {"max_simulation_time": 600, "random_seed": 3},
    "workload": {
        "total_duration": 20,
        "client_profiles": [{
            "profile_name": "chat", "request_rate": 4,
            "prompt_tokens_dist_config": {"type": "Constant", "value": 512},
            "max_output_tokens_dist_config": {"type": "Constant", "value": 128},
        }],
    },
    "frameworks_to_test": [{"name": "vllm", "type": "vllm",
                            "config": {"model": "Llama-3.1-8B", "gpu_id": "gpu0"}}],
    "metrics_config": {"warm_up_duration_s": 0},
}


def _with_device(entry):
    cfg = copy.deepcopy(BASE)
    cfg["hardware_profile"] = {"compute_devices": [{"device_id": "gpu0", **entry}]}
    return cfg


def test_h100_datasheet_is_priced_as_the_catalog_h100(installed_registry):
    written = run(_with_device({
        "device_type": "GPU", "peak_tflops": {"bf16": 989}, "memory_gbps": 3350,
        "memory_capacity_bytes": 80_000_000_000, "processing_units": 132,
    }), registry=installed_registry).summary
    named = run(_with_device({"device_type": "H100-SXM"}), registry=installed_registry).summary
    tpot_written = written["frameworks"]["vllm"]["tpot_ms"]["p50"]
    tpot_named = named["frameworks"]["vllm"]["tpot_ms"]["p50"]
    assert tpot_written == tpot_named
    assert written["frameworks"]["vllm"]["kv_cache"] == named["frameworks"]["vllm"]["kv_cache"]
    assert written["hardware"]["pricing"]["gpu0"] == {
        "name": "H100-SXM", "profile": "h100_sxm", "how": "matched", "matched": "H100-SXM"}
    assert named["hardware"]["pricing"]["gpu0"]["how"] == "catalog"


def test_an_unknown_gpu_says_it_is_datasheet_only(installed_registry):
    summary = run(_with_device({
        "device_type": "GPU", "peak_tflops": {"bf16": 700}, "memory_gbps": 2500,
    }), registry=installed_registry).summary
    assert summary["hardware"]["pricing"]["gpu0"]["how"] == "datasheet-only"

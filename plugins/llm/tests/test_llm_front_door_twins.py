"""The compiled front door gives the pure one's outputs byte for byte.

The front door is the per-request path outside the engines' schedulers: the request
workloads' sending (``RequestWorkload``, its ``ArrivalStream`` and the trace's
``TraceReplay``) and the serving engines' shell (``ServingEngine``: rejection, the API server
hand-over, the listeners). Each experiment below runs through ``labsim run`` compiled and with
``LABSIM_NATIVE=0``, and every output file must be equal: a trace with conversations under a
concurrency cap, a shared stream over two weighted profiles with conversations and a time
bound, a closed loop, and prompts beyond the model's length (rejected at the door), on both
engines. CI builds the twins and sets ``LABSIM_REQUIRE_NATIVE=1``, so these run there.
"""

from __future__ import annotations

import json
import os

import pytest
from labsim.testing import outputs_compiled_and_pure
from labsim_llm import native

REQUIRED = os.environ.get("LABSIM_REQUIRE_NATIVE") == "1"

FIXED = {"type": "Constant", "value": 256, "is_int": True}
CHAT = {"type": "LogNormal", "mean": 400, "sigma": 300, "is_int": True}


def _profile(name: str, **extra) -> dict:
    return {"profile_name": name, "prompt_tokens_dist_config": CHAT, "max_output_tokens_dist_config": FIXED,
            **extra}


WORKLOADS = {
    "trace-sessions-capped": ("vllm", {"type": "trace", "path": "builtin:splitwise_conv", "max_requests": 300,
                                       "time_scale": 0.2, "concurrency": 8}),
    "shared-stream-conversations": ("trtllm", {
        "request_rate": 12.0, "arrival_process": "gamma", "burstiness": 0.5, "total_duration": 30.0,
        "client_profiles": [_profile("chat", weight=3.0, conversational_probability=0.4),
                            _profile("batch", weight=1.0, streaming_response_probability=0.5)]}),
    "closed-loop": ("vllm", {"concurrency": 6, "num_requests": 200,
                             "client_profiles": [_profile("chat", conversational_probability=0.3)]}),
    "rejected-at-the-door": ("trtllm", {"num_requests": 150, "request_rate": 10.0, "client_profiles": [{
        "profile_name": "long", "max_output_tokens_dist_config": FIXED,
        "prompt_tokens_dist_config": {"type": "Uniform", "low": 100, "high": 200_000, "is_int": True}}]}),
}


def _experiment(framework: str, workload: dict) -> dict:
    return {"name": "front-door", "simulation": {"max_simulation_time": 10_000, "random_seed": 3},
            "hardware_profile": {"device": "H100-SXM"}, "workload": workload,
            "frameworks_to_test": [{"name": framework, "type": framework, "config": {"model": "Llama-3.1-8B"}}],
            "metrics_config": {"sinks": ["summary_json", "csv"]}}


@pytest.mark.parametrize("case", sorted(WORKLOADS))
def test_the_front_door_gives_the_pure_outputs(case, tmp_path):
    if native.status()["request_workload"] != "compiled":
        if REQUIRED:
            raise AssertionError(f"labsim_llm's twins are required: {native.status()}")
        pytest.skip(f"labsim_llm's twins are not in use here: {native.status()['request_workload']}")
    framework, workload = WORKLOADS[case]
    path = tmp_path / "experiment.yaml"
    path.write_text(json.dumps(_experiment(framework, workload)))      # JSON is YAML
    outputs = outputs_compiled_and_pure(path, tmp_path)
    assert "requests.csv" in outputs["1"]
    assert outputs["1"] == outputs["0"]
    rows = outputs["1"]["requests.csv"].decode().splitlines()
    assert len(rows) > 100
    if case == "rejected-at-the-door":
        assert sum(",rejected," in row for row in rows) > 10

"""A framework that declares neither ``summary_schema`` nor ``headline`` still validates against
``labsim schema summary`` and shows its numbers in the result table (beside vLLM)."""

from __future__ import annotations

import labsim
import labsim_collectives.plugin
import labsim_gpus.plugin
import labsim_llm.plugin
import labsim_vllm.plugin
from jsonschema import Draft202012Validator
from labsim import hookimpl
from labsim.cli import headline_rows
from labsim.schema import compose_summary_schema
from labsim.testing import make_registry


class Bare(labsim.Framework):
    """Answers every request at once (no summary_schema, no headline)."""

    name = "bare"

    def start(self):
        self.served = 0

    def submit(self, request):
        self.served += 1
        self.notify_finished(request)

    def is_idle(self):
        return True

    def summary(self):
        return {"served": self.served, "share": 0.5}


class _Plugin:
    @hookimpl
    def register_frameworks(register):
        register(Bare)


def test_a_framework_without_summary_schema_or_headline():
    registry = make_registry(_Plugin, labsim_gpus.plugin, labsim_collectives.plugin,
                             labsim_llm.plugin, labsim_vllm.plugin)
    profile = {"profile_name": "c", "inter_arrival_time_dist_config": {"type": "Exponential", "rate": 4},
               "prompt_tokens_dist_config": {"type": "Constant", "value": 100},
               "max_output_tokens_dist_config": {"type": "Constant", "value": 8}}
    result = labsim.run({
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"total_duration": 2, "client_profiles": [profile]},
        "frameworks_to_test": [{"name": "v", "type": "vllm", "config": {"model": "Llama-3.1-8B"}},
                               {"name": "b", "type": "bare"}],
    }, seed=1, registry=registry)
    schema = compose_summary_schema(registry)
    assert not list(Draft202012Validator(schema).iter_errors(result.summary))
    headers, rows = headline_rows(result.summary, registry)
    by_label = {r[0]: r[1:] for r in rows}
    served = result.summary["frameworks"]["b"]["served"]
    assert served > 0 and by_label["served"][:2] == ["-", str(served)]
    assert by_label["share"][1] == "0.5"
    assert by_label["TTFT p50 (ms)"][0] != "-"            # vLLM's headline is still there

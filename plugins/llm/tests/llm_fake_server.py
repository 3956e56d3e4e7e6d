"""A stand-in serving framework for the workload tests (tests only, no cost model).

``fake_server`` finishes every request ``delay_s`` simulated seconds after it
was submitted (or rejects those whose prompt exceeds ``reject_above``), and
records what it saw: every request, and the most requests in flight at once.
:func:`simulate` runs a workload against such servers and returns them.
"""

from __future__ import annotations

import copy

import labsim
from labsim import hookimpl
from labsim.orchestrator import Orchestrator, load_experiment
from labsim_llm.models import resolve_model


class FakeServer(labsim.Framework):
    """Finishes each request after a fixed delay (workload tests)."""

    name = "fake_server"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "delay_s": {"type": "number", "minimum": 0, "default": 1.0},
            "reject_above": {"type": "integer", "minimum": 0},
            "model_profile_id": {"type": "string"},
        },
    }

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.seen = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.model = None
        if config.get("model_profile_id"):
            self.model = resolve_model(context, config["model_profile_id"])

    def start(self):
        pass

    def submit(self, request):
        env = self.context.env
        self.seen.append(request)
        limit = self.config.get("reject_above")
        if limit is not None and request.prompt_tokens > limit:
            request.status = "rejected"
            request.reject_reason = "prompt too long"
            self.notify_finished(request)
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        request.first_scheduled_s = env.now
        env.timeout(self.config.get("delay_s", 1.0)).callbacks.append(
            lambda _e, r=request: self._done(r)
        )

    def _done(self, request):
        self.in_flight -= 1
        request.first_token_s = request.finish_s = self.context.env.now
        request.status = "finished"
        self.notify_finished(request)

    def is_idle(self):
        return self.in_flight == 0

    def summary(self):
        out = {"served": len(self.seen), "max_in_flight": self.max_in_flight}
        if self.model is not None:
            out["model"] = self.model.name
            out["weight_bytes"] = self.model.weight_bytes("auto")
        return out


def experiment(workload: dict, servers=(("a", 1.0),), seed: int = 1) -> dict:
    return {
        "simulation": {"max_simulation_time": 10_000, "random_seed": seed},
        "workload": workload,
        "frameworks_to_test": [
            {
                "name": n,
                "type": "fake_server",
                "is_target_for_workload": True,
                "config": {"delay_s": d},
            }
            for n, d in servers
        ],
    }


def simulate(registry, workload, servers=(("a", 1.0),), seed=1):
    """Run *workload* against fake servers ``(name, delay_s)``.

    Returns ``(summary, {framework name: FakeServer})``.
    """
    orch = Orchestrator(
        load_experiment(experiment(copy.deepcopy(workload), servers, seed)), registry
    )
    built = {}
    original = registry.get("frameworks", "fake_server").__init__

    def spy(self, name, config, context):
        original(self, name, config, context)
        built[name] = self

    cls = registry.get("frameworks", "fake_server")
    cls.__init__ = spy
    try:
        result = orch.run(None, write_files=False)
    finally:
        cls.__init__ = original
    return result.summary, built


@hookimpl
def register_frameworks(register):
    register(FakeServer)

"""Stand-in components for the kernel's own tests (no GPU or LLM knowledge).

``ticks`` emits requests at intervals drawn from a distribution; ``queue``
serves them one at a time with a service time drawn from a distribution. Both
are registered exactly as a third-party plugin would register them.
"""

from __future__ import annotations

import labsim
from labsim import hookimpl

DIST = {"$ref": "#/$defs/distribution"}


class TickRequest:
    __slots__ = ("request_id", "arrival_s", "finish_s")

    def __init__(self, request_id, arrival_s):
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.finish_s = None


class Ticks(labsim.Workload):
    """Requests at intervals drawn from a distribution (kernel tests)."""

    name = "ticks"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["interval_dist_config", "count"],
        "properties": {
            "type": {"type": "string"},
            "count": {"type": "integer", "minimum": 1},
            "interval_dist_config": DIST,
        },
    }

    @classmethod
    def expected_requests(cls, config, horizon_s, mean_of):
        return float(config["count"])

    def start(self, target):
        self._done = False
        self.context.env.process(self._emit(target))

    def _emit(self, target):
        env = self.context.env
        gaps = self.context.distribution(self.config["interval_dist_config"], "workload", "gap")
        for i in range(self.config["count"]):
            yield env.timeout(gaps.sample())
            target.submit(TickRequest(i, env.now))
        self._done = True

    def summary(self):
        return {"requests": self.config["count"]}


class Queue(labsim.Framework):
    """One request at a time with a random service time (kernel tests)."""

    name = "queue"
    aliases = ("QUEUE", "fifo-queue")
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["service_dist_config"],
        "properties": {
            "service_dist_config": DIST,
            "max_num_seqs": {"type": "integer", "minimum": 1, "default": 8},
        },
    }
    headline = [("served", "served"), ("mean wait (s)", "wait_s.mean")]

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.store = None
        self.waits = []
        self.arrivals = []

    def start(self):
        import simpy

        self.store = simpy.Store(self.context.env)
        self.service = self.context.distribution(
            self.config["service_dist_config"], self.instance_name
        )
        self.rows = self.context.metrics.table(
            "requests", ["request_id", "framework", "arrival_s", "finish_s"]
        )
        self.context.env.process(self._serve())

    def submit(self, request):
        self.store.put(request)

    def _serve(self):
        env = self.context.env
        while True:
            request = yield self.store.get()
            self.waits.append(env.now - request.arrival_s)
            self.arrivals.append(request.arrival_s)
            yield env.timeout(self.service.sample())
            request.finish_s = env.now
            self.rows.append([request.request_id, self.instance_name, request.arrival_s, env.now])
            self.notify_finished(request)

    def summary(self):
        return {
            "served": len(self.waits),
            "wait_s": self.context.metrics.stats(self.waits, self.arrivals),
        }


@hookimpl
def register_workloads(register):
    register(Ticks)


@hookimpl
def register_frameworks(register):
    register(Queue)

"""Monitoring rules of a cluster, evaluated in simulated time and recorded as events.

    monitoring:
      every_s: 300
      rules:
        - {name: long-queue, metric: queue_wait_h, above: 4}
        - {name: idle-gpus, metric: gpu_utilisation, below: 0.5}
        - {name: flaky, metric: interruptions_per_hour, above: 2}

Every ``every_s`` simulated seconds (from 0) each rule looks at the cluster and **fires** when
its condition starts to hold and **resolves** when it stops; each change is a row of the
``events`` table (``events.csv``, ``run.sqlite``): policy, time, kind ``alert``, the rule's name,
state, value, threshold (the cluster's incidents share the table: :mod:`labsim_cluster.failures`).
The metrics:

* ``queue_wait_h``: how long the longest-waiting queued job has waited (hours), since it was
  submitted, preempted or requeued after a failure;
* ``queue_length``: jobs waiting;
* ``gpu_utilisation``: busy GPUs over the cluster's;
* ``interruptions_per_hour``: interruptions in the last ``every_s``, per hour.

The cluster's state changes only at its own events (arrivals, completions, preemptions,
failures), so the rules are evaluated when the next of those comes, for every check time
passed since, on the state that held then. No timer of their own keeps the simulation
running after the last job.
"""

from __future__ import annotations

#: one row per alert firing or resolving (kind ``alert``, name: the rule) and per incident
#: (kind ``node_failure``, ``partition`` or ``spot_reclaim``; name: ``node N`` / ``leaf L``; value:
#: the jobs it ended or stalled; duration_s: how long the node or leaf is out)
EVENT_COLUMNS = ["policy", "time_s", "kind", "name", "state", "value", "threshold", "duration_s"]
METRICS = ("queue_wait_h", "queue_length", "gpu_utilisation", "interruptions_per_hour")

SCHEMA = {
    "type": "object", "additionalProperties": False,
    "description": "Alert rules checked every every_s simulated seconds; each firing and resolution "
                   "is a row of the events table.",
    "properties": {
        "every_s": {"type": "number", "exclusiveMinimum": 0, "default": 300.0,
                    "description": "Seconds between checks."},
        "rules": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "metric"],
            "oneOf": [{"required": ["above"]}, {"required": ["below"]}],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "metric": {"enum": list(METRICS)},
                "above": {"type": "number", "description": "Fire while the metric is above this."},
                "below": {"type": "number", "description": "Fire while the metric is below this."},
            }}},
    },
    "required": ["rules"],
}


class Monitor:
    """The rules of one cluster (see the module docs)."""

    def __init__(self, cluster, config: dict, table):
        self.cluster = cluster
        self.every = float(config.get("every_s", 300.0))
        self.rules = list(config["rules"])
        self.table = table
        self.next_check = 0.0
        self.firing: dict[str, float] = {}          # rule → since when
        self.fired = {r["name"]: 0 for r in self.rules}
        self.firing_s = {r["name"]: 0.0 for r in self.rules}
        self.interruptions: list[float] = []

    def interrupted(self, now: float) -> None:
        self.interruptions.append(now)

    def observe(self, now: float) -> None:
        """Evaluate every check time up to *now* on the cluster's state before *now*'s event."""
        while self.next_check <= now:
            self._check(self.next_check)
            self.next_check += self.every

    def _value(self, metric: str, t: float) -> float:
        c = self.cluster
        if metric == "queue_wait_h":
            return max((t - j.queued_at for j in c.queue), default=0.0) / 3600
        if metric == "queue_length":
            return float(len(c.queue))
        if metric == "gpu_utilisation":
            return (c.capacity - sum(c.free) - c.nodes.down_gpus) / c.capacity
        since = t - self.every
        return sum(1 for x in self.interruptions if since < x <= t) / (self.every / 3600)

    def _check(self, t: float) -> None:
        policy = self.cluster.instance_name
        for rule in self.rules:
            value = self._value(rule["metric"], t)
            if "above" in rule:
                threshold, bad = rule["above"], value > rule["above"]
            else:
                threshold, bad = rule["below"], value < rule["below"]
            name = rule["name"]
            if bad and name not in self.firing:
                self.firing[name] = t
                self.fired[name] += 1
                self.table.append((policy, t, "alert", name, "firing", value, threshold, None))
            elif not bad and name in self.firing:
                self.firing_s[name] += t - self.firing.pop(name)
                self.table.append((policy, t, "alert", name, "resolved", value, threshold, None))

    def summary(self, end: float) -> dict:
        """Per rule: how many times it fired and how long it fired (still firing: up to *end*)."""
        out = {}
        for rule in self.rules:
            name = rule["name"]
            firing = self.firing_s[name] + (max(0.0, end - self.firing[name]) if name in self.firing else 0.0)
            out[name] = {"metric": rule["metric"], "fired": self.fired[name], "firing_h": firing / 3600,
                         "firing_at_end": name in self.firing}
        return out


__all__ = ["EVENT_COLUMNS", "METRICS", "Monitor", "SCHEMA"]

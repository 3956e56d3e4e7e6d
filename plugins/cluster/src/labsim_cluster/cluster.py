"""The ``cluster`` framework: the experiment's topology as a shared GPU cluster, one scheduling
policy deciding which jobs run where.

Each framework entry is one policy (``config: {scheduler: {type: tiresias}}``); several run side
by side on the identical jobs, each on its own copy of the cluster. GPUs are the topology's
nodes × GPUs per node, under the topology's leaf switches, of one GPU type or several
(``gpu_types``). A job asks for whole GPUs of one type and runs when all of them are free at
once (gang scheduling), placed by ``placement`` (``pack``: one node, else one leaf, else as few
leaves as possible; ``spread``; ``any``: see :mod:`labsim_cluster.placement`). Where it lands
sets its speed (:mod:`labsim_cluster.rates`): a slower GPU type or a placement whose traffic
crosses nodes or leaves stretches its run. A preempted job returns to the queue keeping its
attained work (it checkpointed) and pays ``preemption_overhead_s`` (restore) when it runs again.

Per job (table ``jobs``): arrival, first start, end, JCT, queueing delay, preemptions. Per run
attempt (table ``attempts``): where it ran, from when to when, the work it did and how it ended
(``completed``, ``preempted`` or ``interrupted``, with the GPU-seconds an interruption lost
since the last checkpoint). Summary:
JCT mean/P50/P99 overall and by size (1 GPU, 2–8, more than 8), queueing delay, makespan, GPU
utilisation, Jain's fairness over users' mean slowdown (JCT / duration), GPU-hours and cost
(per GPU type), locality of the multi-GPU jobs' runs and the fragmentation of the free GPUs.
"""

from __future__ import annotations

import numpy as np

import labsim
from labsim.errors import UsageError

from labsim_cluster.jobs import CLUSTER_JOBS
from labsim_cluster.monitoring import EVENT_COLUMNS
from labsim_cluster.monitoring import SCHEMA as MONITORING_SCHEMA
from labsim_cluster.monitoring import Monitor
from labsim_cluster.placement import LOCALITIES, PLACEMENTS, Nodes
from labsim_cluster.rates import Rates, read_throughputs

USAGE_COLUMNS = ["policy", "time_s", "gpus_busy", "jobs_running", "jobs_waiting"]
ATTEMPT_COLUMNS = ["policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                   "lost_gpu_s", "gpu_type", "locality", "speed"]
JOB_COLUMNS = ["policy", "job_id", "user", "group", "gpus", "duration_s", "arrival_s", "start_s", "end_s",
               "jct_s", "queue_s", "preemptions", "failures", "status"]
#: interruptions per GPU-hour in Meta's Llama 3 pre-training: 419 in 54 days on 16,384 GPUs
LLAMA3_RATE = 419 / (54 * 24 * 16384)
SIZE_CLASSES = (("1 GPU", 1, 1), ("2-8 GPUs", 2, 8), (">8 GPUs", 9, 10**9))


class Cluster(labsim.Framework):
    """A GPU cluster whose nested scheduling policy decides which jobs run (see the module docs)."""

    name = "cluster"
    accepts = (CLUSTER_JOBS,)
    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["scheduler"],
        "properties": {
            "scheduler": {"$ref": "#/$defs/scheduler"},
            "placement": {"enum": list(PLACEMENTS), "default": "pack",
                          "description": "pack: one node (best fit), else one leaf, else fewest leaves; "
                                         "spread: emptiest nodes first; any: free GPUs in node order."},
            "gpu_types": {
                "type": "array", "minItems": 1,
                "description": "Node groups of different GPU types, in node order (their nodes add up to "
                               "the topology's). Default: every node is the topology's device.",
                "items": {"type": "object", "additionalProperties": False, "required": ["name", "nodes"],
                          "properties": {
                              "name": {"type": "string", "minLength": 1,
                                       "description": "The type's name in the throughput table (k80, "
                                                      "p100, v100 in builtin:gavel)."},
                              "nodes": {"type": "integer", "minimum": 1},
                              "device": {"type": "string",
                                         "description": "A catalog GPU (labsim list devices): prices "
                                                        "model-given training jobs on this type."},
                              "price_per_gpu_hour": {"type": "number", "minimum": 0,
                                                     "description": "USD per GPU-hour of this type "
                                                                    "(default: the device's price)."}}}},
            "reference_type": {"type": "string",
                               "description": "The GPU type the jobs' durations hold on (default: the first "
                                              "of gpu_types)."},
            "throughputs": {"type": "string",
                            "description": "Job type × GPU type × GPUs → steps/s: builtin:gavel (Gavel's "
                                           "measurements, OSDI'20) or a CSV (gpu_type, job_type, num_gpus, "
                                           "steps_per_s[, steps_per_s_unconsolidated])."},
            "locality": {
                "type": "object", "additionalProperties": False,
                "description": "Slowdowns of a job placed on more nodes than it needs, or across leaves, "
                               "when neither labsim-training (model-given jobs) nor the throughput table "
                               "knows it.",
                "properties": {"across_nodes": {"type": "number", "minimum": 1, "default": 1.0},
                               "across_leaves": {"type": "number", "minimum": 1,
                                                 "description": "Default: across_nodes."}}},
            "preemption_overhead_s": {"type": "number", "minimum": 0, "default": 0.0,
                                      "description": "Seconds a preempted job spends restoring its "
                                                     "checkpoint when it runs again (yours to measure)."},
            "reschedule_every_s": {"type": "number", "exclusiveMinimum": 0, "default": 60.0,
                                   "description": "How often fair share re-ranks the jobs while some "
                                                  "wait (besides arrivals and completions)."},
            "record_usage": {"type": "boolean", "default": False,
                             "description": "Write the cluster_usage table (cluster_usage.csv): GPUs busy, "
                                            "jobs running and waiting, after every scheduling decision."},
            "price_per_gpu_hour": {"type": "number", "minimum": 0,
                                   "description": "USD per GPU-hour (default: the device's price)."},
            "monitoring": MONITORING_SCHEMA,
            "failures": {
                "type": "object", "additionalProperties": False,
                "description": "Jobs are interrupted (GPU, host or network faults) at a rate per GPU-hour, "
                               "lose the work since their last checkpoint and retry after a backoff.",
                "properties": {
                    "interruptions_per_gpu_hour": {
                        "type": "number", "minimum": 0, "default": LLAMA3_RATE,
                        "description": "Default: Meta's Llama 3 training, 419 unexpected interruptions in "
                                       "54 days on 16,384 H100s (Llama 3 Herd of Models, 2024, §3.3.4)."},
                    "checkpoint_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 3600.0,
                                              "description": "Work since the last checkpoint is lost."},
                    "max_retries": {"type": "integer", "minimum": 0, "default": 3},
                    "retry_backoff_s": {"type": "number", "minimum": 0, "default": 60.0,
                                        "description": "Wait before the first retry; doubles each time."},
                },
            },
        },
    }
    headline = (
        ("jobs finished", "jobs.finished"),
        ("JCT mean (h)", "jct_h.mean"),
        ("JCT p50 (h)", "jct_h.p50"),
        ("JCT p99 (h)", "jct_h.p99"),
        ("queueing mean (h)", "queueing_h.mean"),
        ("makespan (h)", "makespan_h"),
        ("GPU utilisation", "gpu_utilisation"),
        ("fairness (Jain)", "fairness_jain"),
        ("preemptions", "jobs.preemptions"),
        ("interruptions", "jobs.interruptions"),
        ("GPU-hours lost to failures", "gpu_hours_lost_to_failures"),
        ("multi-GPU runs across leaves", "placement.runs.spine"),
        ("free GPUs fragmented", "placement.fragmentation"),
        ("cost (USD)", "cost.usd"),
    )

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        topo = context.hardware.topology
        if topo is None:
            raise UsageError("a cluster needs hardware_profile.topology (nodes × GPUs per node), e.g. "
                             "{type: custom, device: V100-SXM2-32GB, gpus_per_node: 4, nodes: 16}")
        self.per_node = int(topo.gpus_per_node)
        self.capacity = int(topo.world_size)
        self.device = context.hardware.device()
        self.gpus = context.hardware.allocate(instance_name, self.capacity, why="the whole cluster")
        self.type_specs = self._gpu_types(config, topo)
        self.nodes = Nodes(int(topo.nodes), self.per_node, int(getattr(topo, "nodes_per_leaf", topo.nodes) or 1),
                           [(t["name"], int(t["nodes"])) for t in self.type_specs])
        names = [t["name"] for t in self.type_specs]
        ref = config.get("reference_type", names[0])
        if ref not in names:
            raise UsageError(f"{instance_name}: reference_type {ref!r} is not one of gpu_types "
                             f"({', '.join(names)})")
        table = read_throughputs(config["throughputs"], context.base_dir) if config.get("throughputs") else None
        self.rates = Rates(self.nodes, self.per_node, self.type_specs, names.index(ref), table,
                           config.get("locality") or {}, topo)
        self.placement = config.get("placement", "pack")
        block = config["scheduler"]
        self.policy = context.registry.get("schedulers", block["type"])(block, context)
        if hasattr(self.policy, "bind"):
            self.policy.bind(self)
        self.queue: list = []
        self.running: list = []
        self.finished = 0
        self.records: list[tuple] = []      # (gpus, duration, arrival, start, end, user, preemptions)
        self.busy_gpu_s = 0.0
        self.busy_by_type = [0.0] * len(self.type_specs)
        self.runs = dict.fromkeys(LOCALITIES, 0)   # multi-GPU runs by locality
        self.split = 0                             # runs of jobs that fit one node placed on several
        self.slowdowns: list[float] = []           # of the multi-GPU runs
        self.attained_by_key: dict[str, dict[str, float]] = {"user": {}, "group": {}}
        self._closed = False
        self._rerank_token = None
        failures = config.get("failures")
        self.fail_rate = (float(failures.get("interruptions_per_gpu_hour", LLAMA3_RATE)) / 3600.0
                          if failures is not None else 0.0)
        self.rng = context.rng(instance_name, "failures")
        self.lost_gpu_s = 0.0
        self.interruptions = 0
        self.failed = 0
        self.table = context.metrics.table("jobs", JOB_COLUMNS)
        self.attempts = context.metrics.table("attempts", ATTEMPT_COLUMNS)
        self.monitor = (Monitor(self, config["monitoring"], context.metrics.table("events", EVENT_COLUMNS))
                        if config.get("monitoring") else None)
        self.usage = (context.metrics.table("cluster_usage", USAGE_COLUMNS)
                      if config.get("record_usage") else None)

    def _gpu_types(self, config, topo) -> list[dict]:
        """The node groups: ``gpu_types`` checked against the topology, or one group of the
        topology's device."""
        types = config.get("gpu_types")
        if not types:
            return [{"name": config.get("reference_type", self.device.name), "nodes": int(topo.nodes)}]
        names = [t["name"] for t in types]
        if len(set(names)) != len(names):
            raise UsageError(f"{self.instance_name}: gpu_types names a type twice ({', '.join(names)})")
        total = sum(int(t["nodes"]) for t in types)
        if total != int(topo.nodes):
            raise UsageError(f"{self.instance_name}: gpu_types add up to {total} nodes; the topology has "
                             f"{topo.nodes} (set hardware_profile.topology.nodes: {total})")
        for t in types:
            if t.get("device"):
                labsim.device(t["device"])  # an unknown name exits 2 here, naming the catalog
        return [dict(t) for t in types]

    @property
    def free(self) -> list[int]:
        """Free GPUs per node."""
        return self.nodes.free

    # -- the work items -----------------------------------------------------------------------

    def start(self):
        pass

    def submit(self, job):
        fits = [t for t, cap in enumerate(self.nodes.capacity_by_type)
                if job.gpus <= cap and self.rates.type_speed(job, t) > 0]
        if not fits:
            if job.gpus > max(self.nodes.capacity_by_type):
                raise UsageError(f"workload: job {job.job_id} asks for {job.gpus} GPUs; the cluster has "
                                 f"{self.capacity} ({len(self.free)} nodes × {self.per_node})"
                                 + (f", at most {max(self.nodes.capacity_by_type)} of one type"
                                    if len(self.type_specs) > 1 else ""))
            raise UsageError(f"workload: job {job.job_id} ({job.kind or 'no job_type'}, {job.gpus} GPUs) runs on "
                             f"no GPU type of the cluster that has {job.gpus} GPUs (the throughput table "
                             "gives it 0 steps/s there)")
        self._observe()
        job.run_overhead_s = 0.0
        job.queued_at = self.context.env.now
        self.queue.append(job)
        self._schedule()

    def no_more_jobs(self):
        self._closed = True

    # -- placement ----------------------------------------------------------------------------

    def _where(self, job, gtype: int | None = None) -> tuple[int, list[tuple[int, int]]] | None:
        """``(type, [(node, gpus)])`` for *job* (on type *gtype* if given), or None when its
        GPUs are not free. Without a type, the type with the most free GPUs that runs the job
        (heterogeneity-agnostic)."""
        nodes = self.nodes
        if gtype is not None:
            where = nodes.place(job.gpus, gtype, self.placement)
            return None if where is None else (gtype, where)
        if len(self.type_specs) == 1:
            where = nodes.place(job.gpus, 0, self.placement)
            return None if where is None else (0, where)
        order = sorted(range(len(self.type_specs)), key=lambda t: (-nodes.free_by_type[t], t))
        for t in order:
            if nodes.free_by_type[t] < job.gpus or self.rates.type_speed(job, t) <= 0:
                continue
            where = nodes.place(job.gpus, t, self.placement)
            if where is not None:
                return t, where
        return None

    # -- running ------------------------------------------------------------------------------

    def _start(self, job, gtype: int | None = None) -> bool:
        found = self._where(job, gtype)
        if found is None:
            return False
        t, where = found
        env = self.context.env
        self.nodes.take(where, env.now)
        job.nodes = where
        job.gpu_type = self.type_specs[t]["name"]
        job.type_index = t
        slow = self.rates.slowdown(job, t, where) if job.gpus > 1 else 1.0
        job.rate = self.rates.type_speed(job, t) / slow
        if job.gpus > 1:
            job.locality = self.nodes.locality(where)
            self.runs[job.locality] += 1
            self.slowdowns.append(slow)
            if job.gpus <= self.per_node and len(where) > 1:
                self.split += 1
        else:
            job.locality = "node"
        self.queue.remove(job)
        self.running.append(job)
        if job.start_s is None:
            job.start_s = env.now
        job.run_began = env.now
        job.run_overhead_s = float(self.config.get("preemption_overhead_s", 0.0)) if job.preemptions else 0.0
        token = job.token = object()
        run = job.remaining_s / job.rate + job.run_overhead_s
        if self.fail_rate > 0:
            ttf = float(self.rng.exponential(1.0 / (self.fail_rate * job.gpus)))
            if ttf < run:
                env.timeout(ttf).callbacks.append(lambda _e, j=job, t=token: self._fail(j, t))
                return True
        env.timeout(run).callbacks.append(lambda _e, j=job, t=token: self._finish(j, t))
        return True

    def _fail(self, job, token) -> None:
        """*job* is interrupted: the work since its last checkpoint is lost; it retries after a
        backoff, or fails for good after ``max_retries``."""
        if job.token is not token:
            return
        env = self.context.env
        self._observe()
        if self.monitor is not None:
            self.monitor.interrupted(env.now)
        attempt = self._stop(job)
        cfg = self.config.get("failures") or {}
        every = float(cfg.get("checkpoint_interval_s", 3600.0))
        kept = (job.attained_s // every) * every
        lost = (job.attained_s - kept) * job.gpus
        self.lost_gpu_s += lost
        self.attempts.append(_attempt(attempt, "interrupted", lost, job))
        job.attained_s = kept
        job.failures += 1
        self.interruptions += 1
        if job.failures > int(cfg.get("max_retries", 3)):
            job.end_s = env.now
            self._record(job, "failed")
            self._schedule()
            return
        backoff = float(cfg.get("retry_backoff_s", 60.0)) * 2 ** (job.failures - 1)
        env.timeout(backoff).callbacks.append(lambda _e, j=job: self._requeue(j))
        self._schedule()

    def _requeue(self, job) -> None:
        self._observe()
        job.queued_at = self.context.env.now
        self.queue.append(job)
        self._schedule()

    def _stop(self, job) -> tuple:
        """Take *job* off its GPUs; the start of its ``attempts`` row (the caller adds how it
        ended and what it lost)."""
        env = self.context.env
        ran = max(0.0, env.now - job.run_began - job.run_overhead_s)
        work = min(ran * job.rate, job.duration_s - job.attained_s)
        job.attempts += 1
        row = (self.instance_name, job.job_id, job.attempts, job.gpus,
               " ".join(f"{n}:{g}" for n, g in job.nodes), job.run_began, env.now, work)
        job.attained_s = min(job.duration_s, job.attained_s + ran * job.rate)
        job.service_s += ran
        job.type_s[job.type_index] = job.type_s.get(job.type_index, 0.0) + (env.now - job.run_began)
        held = (env.now - job.run_began) * job.gpus
        self.busy_gpu_s += held
        self.busy_by_type[job.type_index] += held
        for by, key in (("user", job.user), ("group", job.group)):
            done = self.attained_by_key[by]
            done[key] = done.get(key, 0.0) + ran * job.gpus
        self.nodes.give(job.nodes, env.now)
        job.nodes = []
        job.run_began = None
        job.token = None
        self.running.remove(job)
        return row

    def _finish(self, job, token) -> None:
        if job.token is not token:
            return  # preempted since
        env = self.context.env
        self._observe()
        self.attempts.append(_attempt(self._stop(job), "completed", 0.0, job))
        job.attained_s = job.duration_s
        job.end_s = env.now
        self.finished += 1
        self.records.append((job.gpus, job.duration_s, job.arrival_s, job.start_s, job.end_s, job.user,
                             job.preemptions))
        self._record(job, "completed")
        self.notify_finished(job)
        self._schedule()

    def _preempt(self, job) -> None:
        self.attempts.append(_attempt(self._stop(job), "preempted", 0.0, job))
        job.preemptions += 1
        job.queued_at = self.context.env.now
        self.queue.append(job)

    def _record(self, job, status: str) -> None:
        if status == "failed":
            self.failed += 1
        self.table.append((self.instance_name, job.job_id, job.user, job.group, job.gpus, job.duration_s,
                           job.arrival_s, job.start_s, job.end_s, job.end_s - job.arrival_s,
                           job.start_s - job.arrival_s, job.preemptions, job.failures, status))

    def attained_all(self, now: float, by: str = "user") -> dict[str, float]:
        """GPU-seconds each user's (or project's) jobs have run so far (fair share)."""
        totals = dict(self.attained_by_key[by])
        for j in self.running:
            if j.run_began is not None:
                key = j.user if by == "user" else j.group
                totals[key] = totals.get(key, 0.0) + max(0.0, now - j.run_began - j.run_overhead_s) * j.gpus
        return totals

    def _schedule(self) -> None:
        self._decide()
        if self.usage is not None:
            busy = self.capacity - self.nodes.total_free
            self.usage.append((self.instance_name, self.context.env.now, busy, len(self.running), len(self.queue)))

    def _decide(self) -> None:
        env = self.context.env
        if getattr(self.policy, "rounds", False):
            self._assign(self.policy.assign(env.now))
            self._arm_rerank()
        elif getattr(self.policy, "preemptive", False):
            if sum(j.gpus for j in self.queue) <= self.nodes.total_free:
                # everyone fits: the ranking would keep every job, so preempt nobody
                for j in sorted(self.queue, key=lambda j: self.policy.priority(j, env.now)):
                    self._start(j)
                self._arm_rerank()
                return
            jobs = self.running + self.queue
            ranked = sorted(jobs, key=lambda j: self.policy.priority(j, env.now))
            room, keep = self.capacity, []
            for j in ranked:
                if j.gpus <= room:
                    keep.append(j)
                    room -= j.gpus
            chosen = set(map(id, keep))
            for j in [j for j in self.running if id(j) not in chosen]:
                self._preempt(j)
            waiting = set(map(id, self.queue))
            for j in keep:
                if id(j) in waiting:
                    self._start(j)
            self._arm_rerank()
        else:
            queue = sorted(self.queue, key=lambda j: j.arrival_s)
            blocking = getattr(self.policy, "blocking", False)
            for j in self.policy.pick(queue, self.nodes.total_free, env.now):
                if not self._start(j) and blocking:
                    break  # the head's GPUs are free but not on one type / in one placement: it waits

    def _assign(self, plan: list[tuple]) -> None:
        """Run the round's plan ``[(job, type)]`` (best first): a running job planned on another
        type, or not planned, is preempted; the planned jobs that wait start on their type."""
        want = {id(j): t for j, t in plan}
        for j in [j for j in self.running if want.get(id(j), -1) != j.type_index]:
            self._preempt(j)
        for j, t in plan:
            if j.run_began is None and j in self.queue:
                self._start(j, t)

    def _arm_rerank(self) -> None:
        """Wake the policy again when the ranking may change between arrivals and completions:
        at the time the policy names (``next_change``: Tiresias' next threshold crossing), or
        every ``reschedule_every_s`` for a policy whose ranks drift (fair share; a round-based
        policy's own round length) — and only while jobs wait, since a ranking with nobody
        waiting preempts nobody."""
        if not self.queue:
            return
        env = self.context.env
        at = None
        nxt = getattr(self.policy, "next_change", None)
        if nxt is not None:
            at = nxt(self.running, env.now)
        elif getattr(self.policy, "round_s", None):
            at = env.now + float(self.policy.round_s)
        elif getattr(self.policy, "drifts", False):
            at = env.now + float(self.config.get("reschedule_every_s", 60.0))
        if at is None or at <= env.now:
            return
        token = self._rerank_token = object()
        env.timeout(at - env.now).callbacks.append(lambda _e, t=token: self._rerank(t))

    def _rerank(self, token) -> None:
        if token is self._rerank_token:
            self._observe()
            self._schedule()

    def _observe(self) -> None:
        """Run the monitoring checks due up to now, on the state before now's event."""
        if self.monitor is not None:
            self.monitor.observe(self.context.env.now)

    # -- summary ------------------------------------------------------------------------------

    def _price(self, t: int) -> float:
        spec = self.type_specs[t]
        if spec.get("price_per_gpu_hour") is not None:
            return float(spec["price_per_gpu_hour"])
        if self.config.get("price_per_gpu_hour") is not None:
            return float(self.config["price_per_gpu_hour"])
        device = labsim.device(spec["device"]) if spec.get("device") else self.device
        return float(getattr(device, "price_per_hour", 0.0) or 0.0)

    def summary(self):
        if not self.records:
            return {"jobs": {"finished": 0, "failed": self.failed,
                             "unfinished": len(self.queue) + len(self.running)}}
        rec = np.asarray([r[:5] for r in self.records], dtype=float)
        gpus, dur, arr, start, end = rec.T
        jct = end - arr
        queue = start - arr

        def stats(x):
            return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)),
                    "p99": float(np.percentile(x, 99))}

        makespan = float(end.max() - arr.min())
        users: dict[str, list[float]] = {}
        for r in self.records:
            users.setdefault(r[5], []).append((r[4] - r[2]) / r[1])
        slow = np.asarray([np.mean(v) for v in users.values()])
        jain = float(slow.sum() ** 2 / (len(slow) * (slow ** 2).sum())) if len(slow) else None
        types = {}
        usd = usd_busy = 0.0
        for t, spec in enumerate(self.type_specs):
            price = self._price(t)
            held = self.nodes.capacity_by_type[t] * makespan / 3600
            busy = self.busy_by_type[t] / 3600
            usd += held * price
            usd_busy += busy * price
            types[spec["name"]] = {"gpus": self.nodes.capacity_by_type[t], "usd_per_gpu_hour": price,
                                   "busy_gpu_hours": busy, "utilisation": busy / held if held else None,
                                   "usd": held * price}
        held_h = self.capacity * makespan / 3600
        busy_h = self.busy_gpu_s / 3600
        by_size = {}
        for label, lo, hi in SIZE_CLASSES:
            mask = (gpus >= lo) & (gpus <= hi)
            if mask.any():
                by_size[label] = {"jobs": int(mask.sum()), **{k: v / 3600 for k, v in stats(jct[mask]).items()}}
        multi = sum(self.runs.values())
        return {
            "type": self.name,
            "scheduler": self.config["scheduler"]["type"],
            "jobs": {"finished": self.finished, "failed": self.failed,
                     "unfinished": len(self.queue) + len(self.running),
                     "preemptions": int(sum(r[6] for r in self.records)),
                     "interruptions": self.interruptions},
            "gpu_hours_lost_to_failures": self.lost_gpu_s / 3600,
            "jct_h": {k: v / 3600 for k, v in stats(jct).items()},
            "jct_h_by_size": by_size,
            "queueing_h": {k: v / 3600 for k, v in stats(queue).items()},
            "makespan_h": makespan / 3600,
            "gpu_utilisation": busy_h / held_h if held_h else None,
            "fairness_jain": jain,
            "gpu_hours": {"held": held_h, "busy": busy_h},
            "placement": {"rule": self.placement, "multi_gpu_runs": multi, "runs": dict(self.runs),
                          "split_runs": self.split,
                          "mean_slowdown": float(np.mean(self.slowdowns)) if self.slowdowns else 1.0,
                          "fragmentation": self.nodes.fragmentation(float(end.max()))},
            **({"gpu_types": types} if len(types) > 1 else {}),
            "cost": {"usd": usd, "usd_idle": usd - usd_busy,
                     "usd_per_gpu_hour": usd / held_h if held_h else None},
            **({"alerts": self._alerts()} if self.monitor is not None else {}),
        }

    def _alerts(self) -> dict:
        now = self.context.env.now
        self.monitor.observe(now)
        return self.monitor.summary(now)


def _attempt(row: tuple, outcome: str, lost: float, job) -> tuple:
    """An ``attempts`` row: the run's *row* from :meth:`Cluster._stop`, how it ended, the
    GPU-seconds it lost, and where it ran (GPU type, locality, speed)."""
    return (*row, outcome, lost, job.gpu_type, job.locality, job.rate)

"""The ``cluster`` framework: the experiment's topology as a shared GPU cluster, one scheduling
policy deciding which jobs run where.

Each framework entry is one policy (``config: {scheduler: {type: tiresias}}``); several run side
by side on the identical jobs, each on its own copy of the cluster. GPUs are the topology's
nodes × GPUs per node. A job asks for whole GPUs and runs when all of them are free at once
(gang scheduling), placed on as few nodes as possible (``placement: pack``, best fit) or on the
emptiest nodes (``spread``). A preempted job returns to the queue keeping its attained work
(it checkpointed) and pays ``preemption_overhead_s`` (restore) when it runs again.

Per job (table ``jobs``): arrival, first start, end, JCT, queueing delay, preemptions. Per run
attempt (table ``attempts``): where it ran, from when to when, the work it did and how it ended
(``completed``, ``preempted`` or ``interrupted``, with the GPU-seconds an interruption lost
since the last checkpoint). Summary:
JCT mean/P50/P99 overall and by size (1 GPU, 2–8, more than 8), queueing delay, makespan, GPU
utilisation, Jain's fairness over users' mean slowdown (JCT / duration), GPU-hours and cost.
"""

from __future__ import annotations

import numpy as np

import labsim
from labsim.errors import UsageError

from labsim_cluster.jobs import CLUSTER_JOBS
from labsim_cluster.monitoring import EVENT_COLUMNS
from labsim_cluster.monitoring import SCHEMA as MONITORING_SCHEMA
from labsim_cluster.monitoring import Monitor

USAGE_COLUMNS = ["policy", "time_s", "gpus_busy", "jobs_running", "jobs_waiting"]
ATTEMPT_COLUMNS = ["policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                   "lost_gpu_s"]
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
            "placement": {"enum": ["pack", "spread"], "default": "pack",
                          "description": "pack: fewest nodes, best fit; spread: emptiest nodes first."},
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
        block = config["scheduler"]
        self.policy = context.registry.get("schedulers", block["type"])(block, context)
        if hasattr(self.policy, "bind"):
            self.policy.bind(self)
        self.free = [self.per_node] * int(topo.nodes)
        self.queue: list = []
        self.running: list = []
        self.finished = 0
        self.records: list[tuple] = []      # (gpus, duration, arrival, start, end, user, preemptions)
        self.busy_gpu_s = 0.0
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

    # -- the work items -----------------------------------------------------------------------

    def start(self):
        pass

    def submit(self, job):
        if job.gpus > self.capacity:
            raise UsageError(f"workload: job {job.job_id} asks for {job.gpus} GPUs; the cluster has "
                             f"{self.capacity} ({len(self.free)} nodes × {self.per_node})")
        self._observe()
        job.run_overhead_s = 0.0
        job.queued_at = self.context.env.now
        self.queue.append(job)
        self._schedule()

    def no_more_jobs(self):
        self._closed = True

    # -- placement ----------------------------------------------------------------------------

    def _place(self, gpus: int) -> list[tuple[int, int]] | None:
        """``[(node, gpus)]`` for a job of *gpus* GPUs, or None when they are not free."""
        if gpus > sum(self.free):
            return None
        nodes = range(len(self.free))
        if self.config.get("placement", "pack") == "spread":
            order = sorted(nodes, key=lambda n: (-self.free[n], n))
        elif gpus <= self.per_node:
            fits = [n for n in nodes if self.free[n] >= gpus]
            if fits:
                return [(min(fits, key=lambda n: (self.free[n], n)), gpus)]
            order = sorted(nodes, key=lambda n: (-self.free[n], n))
        else:
            order = sorted(nodes, key=lambda n: (-self.free[n], n))
        out, need = [], gpus
        for n in order:
            if need == 0:
                break
            take = min(self.free[n], need)
            if take:
                out.append((n, take))
                need -= take
        return out if need == 0 else None

    # -- running ------------------------------------------------------------------------------

    def _start(self, job) -> bool:
        where = self._place(job.gpus)
        if where is None:
            return False
        env = self.context.env
        for n, g in where:
            self.free[n] -= g
        job.nodes = where
        self.queue.remove(job)
        self.running.append(job)
        if job.start_s is None:
            job.start_s = env.now
        job.run_began = env.now
        job.run_overhead_s = float(self.config.get("preemption_overhead_s", 0.0)) if job.preemptions else 0.0
        token = job.token = object()
        run = job.remaining_s + job.run_overhead_s
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
        self.attempts.append((*attempt, "interrupted", lost))
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
        job.attempts += 1
        row = (self.instance_name, job.job_id, job.attempts, job.gpus,
               " ".join(f"{n}:{g}" for n, g in job.nodes), job.run_began, env.now,
               min(ran, job.duration_s - job.attained_s))
        job.attained_s = min(job.duration_s, job.attained_s + ran)
        self.busy_gpu_s += (env.now - job.run_began) * job.gpus
        for by, key in (("user", job.user), ("group", job.group)):
            done = self.attained_by_key[by]
            done[key] = done.get(key, 0.0) + ran * job.gpus
        for n, g in job.nodes:
            self.free[n] += g
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
        self.attempts.append((*self._stop(job), "completed", 0.0))
        job.attained_s = job.duration_s
        job.end_s = env.now
        self.finished += 1
        self.records.append((job.gpus, job.duration_s, job.arrival_s, job.start_s, job.end_s, job.user,
                             job.preemptions))
        self._record(job, "completed")
        self.notify_finished(job)
        self._schedule()

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
            busy = self.capacity - sum(self.free)
            self.usage.append((self.instance_name, self.context.env.now, busy, len(self.running), len(self.queue)))

    def _decide(self) -> None:
        env = self.context.env
        if getattr(self.policy, "preemptive", False):
            if sum(j.gpus for j in self.queue) <= sum(self.free):
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
                self.attempts.append((*self._stop(j), "preempted", 0.0))
                j.preemptions += 1
                j.queued_at = env.now
                self.queue.append(j)
            waiting = set(map(id, self.queue))
            for j in keep:
                if id(j) in waiting:
                    self._start(j)
            self._arm_rerank()
        else:
            queue = sorted(self.queue, key=lambda j: j.arrival_s)
            for j in self.policy.pick(queue, sum(self.free), env.now):
                self._start(j)

    def _arm_rerank(self) -> None:
        """Wake the policy again when the ranking may change between arrivals and completions:
        at the time the policy names (``next_change``: Tiresias' next threshold crossing), or
        every ``reschedule_every_s`` for a policy whose ranks drift (fair share) — and only while
        jobs wait, since a ranking with nobody waiting preempts nobody."""
        if not self.queue:
            return
        env = self.context.env
        at = None
        nxt = getattr(self.policy, "next_change", None)
        if nxt is not None:
            at = nxt(self.running, env.now)
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
        price = self.config.get("price_per_gpu_hour")
        if price is None:
            price = float(getattr(self.device, "price_per_hour", 0.0) or 0.0)
        held_h = self.capacity * makespan / 3600
        busy_h = float((gpus * dur).sum()) / 3600
        by_size = {}
        for label, lo, hi in SIZE_CLASSES:
            mask = (gpus >= lo) & (gpus <= hi)
            if mask.any():
                by_size[label] = {"jobs": int(mask.sum()), **{k: v / 3600 for k, v in stats(jct[mask]).items()}}
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
            "cost": {"usd": held_h * price, "usd_idle": (held_h - busy_h) * price,
                     "usd_per_gpu_hour": price},
            **({"alerts": self._alerts()} if self.monitor is not None else {}),
        }

    def _alerts(self) -> dict:
        now = self.context.env.now
        self.monitor.observe(now)
        return self.monitor.summary(now)

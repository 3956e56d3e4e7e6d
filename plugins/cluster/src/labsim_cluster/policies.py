"""Scheduling policies: registered ``Scheduler`` components a cluster nests
(``config: {scheduler: {type: NAME, ...}}``).

Non-preemptive policies answer :meth:`pick` — which queued jobs start now on the free GPUs.
Preemptive ones (``preemptive = True``) rank every job, running or waiting, with
:meth:`priority`; the cluster then runs the best-ranked jobs that fit and preempts the rest
(checkpoint and restore cost: the cluster's ``preemption_overhead_s``).

- ``fifo``: arrival order, the head of the queue blocks the rest (YARN's capacity scheduler as
  the Tiresias paper's baseline, Gu et al. NSDI'19 §6).
- ``sjf``: shortest job first among those that fit (durations known), non-preemptive.
- ``srtf``: shortest remaining time first, preemptive (the Tiresias paper's SRTF, an oracle).
- ``easy_backfill``: FIFO, but a later job may start now if it fits without delaying the head
  job's reservation (Lifka, "The ANL/IBM SP scheduling system", 1995; EASY backfilling).
- ``tiresias``: discretised two-dimensional least-attained-service (2D-LAS): a job's attained
  service is GPUs × seconds run; jobs sit in the queue whose threshold they have not passed,
  FIFO within a queue, preemptive; durations unknown (Gu et al. NSDI'19 §4.1).
- ``priority``: the job's ``priority`` (higher first, from the trace), then arrival; preemptive:
  a higher-priority arrival preempts lower-priority running jobs, which checkpoint and later
  restore (Kubernetes' PriorityClass preemption, Slurm's ``PreemptMode=REQUEUE``).
- ``fair_share``: the user (or project) with the least attained GPU-time goes first, then
  arrival order; preemptive (max-min fairness of GPU-time, DRF over one resource, Ghodsi et al.
  NSDI'11).
- ``drf``: Dominant Resource Fairness over what the jobs hold now (Ghodsi et al., "Dominant
  Resource Fairness: Fair Allocation of Multiple Resource Types", NSDI'11, §4): the user (or
  project) whose largest share of the cluster's GPUs, CPUs or memory is smallest starts its next
  job, again and again while jobs fit (progressive filling); non-preemptive. CPUs and memory
  count when the jobs give ``cpu`` / ``mem_gib`` and the cluster ``node_cpus`` /
  ``node_mem_gib``; otherwise DRF is over GPUs alone.

Every policy runs under the cluster's ``quotas`` (most GPUs a user or project holds at once):
a job over its quota waits without holding back the others.
"""

from __future__ import annotations

import heapq

import labsim

BASE = {"type": {}}


def _schema(**props) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": {**BASE, **props}}


class _Policy(labsim.Scheduler):
    preemptive = False
    cluster = None

    def bind(self, cluster) -> None:
        """The cluster this policy decides for (running jobs, clock, node sizes)."""
        self.cluster = cluster


class Fifo(_Policy):
    """Arrival order; the head of the queue blocks the rest."""

    name = "fifo"
    blocking = True  # a head that cannot be placed holds the jobs behind it
    config_schema = _schema()

    def pick(self, queue, free_gpus, now):
        started = []
        for job in queue:
            if job.gpus > free_gpus:
                break
            started.append(job)
            free_gpus -= job.gpus
        return started


class Sjf(_Policy):
    """Shortest job first among those that fit; non-preemptive."""

    name = "sjf"
    config_schema = _schema()

    def pick(self, queue, free_gpus, now):
        started = []
        for job in sorted(queue, key=lambda j: (j.duration_s, j.arrival_s)):
            if job.gpus <= free_gpus:
                started.append(job)
                free_gpus -= job.gpus
        return started


class Srtf(_Policy):
    """Shortest remaining time first; preemptive."""

    name = "srtf"
    preemptive = True
    config_schema = _schema()

    def priority(self, job, now):
        return (job.remaining_s, job.arrival_s)


class EasyBackfill(_Policy):
    """FIFO with EASY backfilling: later jobs may jump ahead if the head's start is not delayed."""

    name = "easy_backfill"
    config_schema = _schema()

    def pick(self, queue, free_gpus, now):
        started = []
        queue = list(queue)
        while queue and queue[0].gpus <= free_gpus:
            head = queue.pop(0)
            started.append(head)
            free_gpus -= head.gpus
        if not queue:
            return started
        head = queue[0]
        # the head's reservation: when enough running jobs will have ended (durations as given)
        ends = sorted((j.run_began + j.remaining_s / j.rate + j.run_overhead_s, j.gpus)
                      for j in self.cluster.running if j not in started)
        avail, shadow = free_gpus, float("inf")
        for end, gpus in ends:
            avail += gpus
            if avail >= head.gpus:
                shadow = end
                break
        extra = avail - head.gpus if shadow < float("inf") else 0  # GPUs the head will not need
        for job in queue[1:]:
            if job.gpus > free_gpus:
                continue
            if now + job.remaining_s <= shadow or job.gpus <= extra:
                started.append(job)
                free_gpus -= job.gpus
                if now + job.remaining_s > shadow:
                    extra -= job.gpus
        return started


class Tiresias(_Policy):
    """Discretised 2D-LAS: queues by attained GPU-time, FIFO within a queue; preemptive."""

    name = "tiresias"
    preemptive = True
    config_schema = _schema(queue_thresholds_gpu_s={
        "type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "default": [3600.0],
        "description": "Attained GPU-seconds at which a job moves to the next (lower) queue: "
                       "one threshold, two queues, as the Tiresias simulator runs by default."})

    def __init__(self, config, context):
        super().__init__(config, context)
        self.thresholds = sorted(float(x) for x in config.get("queue_thresholds_gpu_s", [3600.0]))

    def next_change(self, running, now):
        """When the next running job crosses a queue threshold (its rank drops)."""
        soonest = None
        for job in running:
            attained = _service(job, now)
            for t in self.thresholds:
                if attained < t:
                    at = now + (t - attained) / job.gpus + max(0.0, job.run_began + job.run_overhead_s - now)
                    soonest = at if soonest is None else min(soonest, at)
                    break
        return soonest

    def priority(self, job, now):
        attained = _service(job, now)
        queue = sum(1 for t in self.thresholds if attained >= t)
        return (queue, job.arrival_s)


def _service(job, now: float) -> float:
    """GPU-seconds *job* has run so far (its attained service, whatever its speed)."""
    ran = job.service_s
    if job.run_began is not None:
        ran += max(0.0, now - job.run_began - job.run_overhead_s)
    return ran * job.gpus


class FairShare(_Policy):
    """The user (or project) with the least attained GPU-time first; preemptive."""

    name = "fair_share"
    preemptive = True
    drifts = True  # attained GPU-time grows while jobs run: re-rank every reschedule_every_s
    config_schema = _schema(by={"enum": ["user", "group"], "default": "user",
                                "description": "Share between users or between projects (group)."})

    _memo: tuple = (None, {})

    def priority(self, job, now):
        by = self.config.get("by", "user")
        if self._memo[0] != now:  # every job's owner's GPU-time, once per ranking
            self._memo = (now, self.cluster.attained_all(now, by))
        key = job.user if by == "user" else job.group
        return (self._memo[1].get(key, 0.0), job.arrival_s)


class Priority(_Policy):
    """Higher ``priority`` first, then arrival order; preemptive."""

    name = "priority"
    preemptive = True
    config_schema = _schema()

    def priority(self, job, now):
        return (-job.priority, job.arrival_s)


class Drf(_Policy):
    """Dominant Resource Fairness by progressive filling over the running jobs' resources."""

    name = "drf"
    tallies = True  # the cluster keeps what each user and project holds
    config_schema = _schema(by={"enum": ["user", "group"], "default": "user",
                                "description": "Share between users or between projects (group)."})

    def _share(self, gpus: float, cpu: float, mem: float) -> float:
        """The dominant share of holding *gpus*, *cpu* and *mem* (those the cluster counts)."""
        c = self.cluster
        share = gpus / c.capacity
        if c.totals["cpu"]:
            share = max(share, cpu / c.totals["cpu"])
        if c.totals["mem_gib"]:
            share = max(share, mem / c.totals["mem_gib"])
        return share

    def pick(self, queue, free_gpus, now):
        if not queue:
            return []
        c = self.cluster
        by = self.config.get("by", "user")
        key = (lambda j: j.user) if by == "user" else (lambda j: j.group)
        waiting: dict[str, list] = {}
        for j in queue:                      # arrival order within an owner
            waiting.setdefault(key(j), []).append(j)
        use = {}                             # owner → [GPUs, CPUs, memory] held now
        for k in waiting:
            cpu, mem = c.res_by[by].get(k, (0.0, 0.0))
            use[k] = [c.held_by[by].get(k, 0), cpu, mem]
        heap = [(self._share(*use[k]), k) for k in waiting]
        heapq.heapify(heap)
        room = [free_gpus, *((c.totals[r] - c.held_res[r]) if c.totals[r] else float("inf")
                             for r in ("cpu", "mem_gib"))]
        started = []
        while heap:
            _, k = heapq.heappop(heap)
            jobs = waiting[k]
            job = next((j for j in jobs if j.gpus <= room[0] and j.cpu <= room[1] + 1e-9
                        and j.mem_gib <= room[2] + 1e-9), None)
            if job is None:
                continue                     # nothing of this owner fits now
            jobs.remove(job)
            started.append(job)
            for i, x in enumerate((job.gpus, job.cpu, job.mem_gib)):
                room[i] -= x
                use[k][i] += x
            if jobs:
                heapq.heappush(heap, (self._share(*use[k]), k))
        return started


POLICIES = (Fifo, Sjf, Srtf, EasyBackfill, Tiresias, FairShare, Priority, Drf)

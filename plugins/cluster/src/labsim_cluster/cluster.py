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
A job asking for part of a GPU shares one with others under the ``sharing`` mode
(:mod:`labsim_cluster.fractional`); services and sessions (:mod:`labsim_cluster.kinds`) hold
their GPUs for their lifetime and are not preempted.

Per job (table ``jobs``): arrival, first start, end, JCT, queueing delay, preemptions. Per run
attempt (table ``attempts``): where it ran, from when to when, the work it did and how it ended
(``completed``, ``preempted`` or ``interrupted``, with the GPU-seconds an interruption lost
since the last checkpoint). Summary:
JCT mean/P50/P99 overall and by size (1 GPU, 2–8, more than 8), queueing delay, makespan, GPU
utilisation, Jain's fairness over users' mean slowdown (JCT / duration), GPU-hours and cost
(per GPU type), locality of the multi-GPU jobs' runs and the fragmentation of the free GPUs.
"""

from __future__ import annotations

import labsim
import numpy as np
from labsim.errors import UsageError

from labsim_cluster.failures import KINDS, Failures, Stream
from labsim_cluster.failures import SCHEMA as FAILURES_SCHEMA
from labsim_cluster.fractional import SCHEMA as SHARING_SCHEMA
from labsim_cluster.fractional import SharedGpus, share_of
from labsim_cluster.jobs import CLUSTER_JOBS
from labsim_cluster.kinds import TRAINING, by_kind
from labsim_cluster.monitoring import EVENT_COLUMNS, Monitor
from labsim_cluster.monitoring import SCHEMA as MONITORING_SCHEMA
from labsim_cluster.node_limits import NodeLimits
from labsim_cluster.placement import LOCALITIES, PLACEMENTS, Nodes
from labsim_cluster.rates import Rates, read_throughputs

USAGE_COLUMNS = ["policy", "time_s", "gpus_busy", "jobs_running", "jobs_waiting"]
ATTEMPT_COLUMNS = ["policy", "job_id", "attempt", "gpus", "nodes", "start_s", "end_s", "work_s", "outcome",
                   "lost_gpu_s", "gpu_type", "locality", "speed", "failure", "cost_usd"]
JOB_COLUMNS = ["policy", "job_id", "user", "group", "gpus", "duration_s", "arrival_s", "start_s", "end_s",
               "jct_s", "queue_s", "preemptions", "failures", "reclaims", "cost_usd", "status", "kind",
               "busy_gpu_s"]
CAPACITIES = ("on_demand", "reserved", "spot")
INCIDENT = {"node": "node_failure", "partition": "partition", "spot": "spot_reclaim"}
SIZE_CLASSES = (("<1 GPU", 0, 1 - 1e-9), ("1 GPU", 1, 1), ("2-8 GPUs", 2, 8), (">8 GPUs", 9, 10**9))


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
                                                                    "(default: the device's price)."},
                              "capacity": {"enum": list(CAPACITIES), "default": "on_demand",
                                           "description": "How these nodes are bought: on_demand, reserved or "
                                                          "spot (reclaimed by the provider at "
                                                          "reclaims_per_node_hour). Two groups may share a name "
                                                          "if their capacities differ."},
                              "reclaims_per_node_hour": {"type": "number", "minimum": 0,
                                                         "description": "Spot: how often the provider reclaims "
                                                                        "a node (required for spot; read it from "
                                                                        "your provider's interruption figures)."},
                              "reclaim_outage_s": {"type": "number", "minimum": 0, "default": 0.0,
                                                   "description": "Spot: seconds a reclaimed node stays gone."},
                              "sharing": SHARING_SCHEMA}}},
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
            "sharing": SHARING_SCHEMA,
            "failures": FAILURES_SCHEMA,
            "quotas": {
                "type": "object", "additionalProperties": False,
                "description": "The most GPUs a user's (user:) or project's (group:) jobs may hold at once; "
                               "'*' caps everyone not named. A job over its quota waits (it blocks nobody).",
                "properties": {by: {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
                               for by in ("user", "group")}},
            "node_cpus": {"type": "number", "exclusiveMinimum": 0,
                          "description": "CPU cores per node: a job that gives cpu holds its share per GPU on "
                                         "each node it is placed on, and drf shares them."},
            "node_mem_gib": {"type": "number", "exclusiveMinimum": 0,
                             "description": "Host memory per node (GiB), as node_cpus for the jobs' mem_gib."},
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
        ("jobs failed", "jobs.failed"),
        ("spot reclaims", "jobs.reclaims"),
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
        self.tally = False  # set below: keep what each user and project holds (quotas, drf)
        if hasattr(self.policy, "bind"):
            self.policy.bind(self)
        self.queue: list = []
        self.running: list = []
        self.finished = 0
        self.records: list[tuple] = []      # (gpus, duration, arrival, start, end, user, preemptions, training)
        self.training_held_s = 0.0          # GPU-seconds the finished training jobs held
        self.kind_jobs: list = []           # the finished services and sessions
        self.busy_gpu_s = 0.0
        self.alloc_gpu_s = 0.0                     # GPU-time jobs held (busy: what they computed)
        self.busy_by_type = [0.0] * len(self.type_specs)
        self.shared = SharedGpus([t.get("sharing", config.get("sharing")) for t in self.type_specs],
                                 [labsim.device(t["device"]) if t.get("device") else self.device
                                  for t in self.type_specs])
        self.runs = dict.fromkeys(LOCALITIES, 0)   # multi-GPU runs by locality
        self.split = 0                             # runs of jobs that fit one node placed on several
        self.slowdowns: list[float] = []           # of the multi-GPU runs
        self.attained_by_key: dict[str, dict[str, float]] = {"user": {}, "group": {}}
        self._closed = False
        self._rerank_token = None
        failures = config.get("failures")
        self.failures = Failures(failures or {}, context.rng(instance_name, "failures"), instance_name)
        self.random_failures = failures is not None
        self.prices = [self._price(t) for t in range(len(self.type_specs))]
        self.streams = self._streams(failures, topo, context)
        self.lost_gpu_s = 0.0
        self.interruptions = 0
        self.reclaims = 0
        self.failed = 0
        self.by_kind = dict.fromkeys(KINDS, 0)
        self.lost_by_kind = dict.fromkeys(KINDS, 0.0)
        self.cost_by: dict[str, dict[str, float]] = {"user": {}, "group": {}}
        self._repair_token = None
        self.quotas = {by: dict((config.get("quotas") or {}).get(by) or {}) for by in ("user", "group")}
        self.held_by: dict[str, dict[str, int]] = {"user": {}, "group": {}}
        nodes = int(topo.nodes)
        self.totals = {"cpu": float(config["node_cpus"]) * nodes if config.get("node_cpus") else None,
                       "mem_gib": float(config["node_mem_gib"]) * nodes if config.get("node_mem_gib") else None}
        self.held_res = {"cpu": 0.0, "mem_gib": 0.0}
        self.limits = NodeLimits(self.nodes, config.get("node_cpus"), config.get("node_mem_gib"))
        self.res_by: dict[str, dict[str, list[float]]] = {"user": {}, "group": {}}  # key → [cpu, mem_gib] held
        #: whether quotas or CPU/memory totals can hold a job back
        self.limited = bool(self.quotas["user"] or self.quotas["group"]
                            or any(v is not None for v in self.totals.values()))
        self.tally = self.limited or getattr(self.policy, "tallies", False)
        self.table = context.metrics.table("jobs", JOB_COLUMNS)
        self.attempts = context.metrics.table("attempts", ATTEMPT_COLUMNS)
        self.events = (context.metrics.table("events", EVENT_COLUMNS)
                       if config.get("monitoring") or self.streams else None)
        self.monitor = Monitor(self, config["monitoring"], self.events) if config.get("monitoring") else None
        self.usage = (context.metrics.table("cluster_usage", USAGE_COLUMNS)
                      if config.get("record_usage") else None)

    def _streams(self, failures, topo, context) -> list[Stream]:
        """The incident streams: node failures and leaf partitions (with ``failures``), spot
        reclaims of the spot node groups. Their random streams are the hardware's, not the
        policy's: policies side by side on one cluster meet the same incidents."""
        nodes = self.nodes
        out = []
        if failures is not None:
            from labsim_cluster.failures import NODE_MTBF_H, PARTITIONS_PER_GPU_HOUR

            all_nodes = list(range(len(nodes.free)))
            mtbf_s = float(failures.get("node_mtbf_h", NODE_MTBF_H)) * 3600
            s = Stream("node", len(all_nodes) / mtbf_s, all_nodes, [1.0] * len(all_nodes),
                       context.rng("cluster", "node_failures"))
            s.outage_s = float(failures.get("node_repair_h", 0.0)) * 3600
            out.append(s)
            leaves = sorted(set(nodes.leaf_of))
            gpus = [self.per_node * nodes.leaf_of.count(leaf) for leaf in leaves]
            rate = float(failures.get("partitions_per_gpu_hour", PARTITIONS_PER_GPU_HOUR)) * sum(gpus) / 3600
            s = Stream("partition", rate, leaves, gpus, context.rng("cluster", "partitions"))
            s.outage_s = self.failures.partition_s
            out.append(s)
        for t, spec in enumerate(self.type_specs):
            if spec.get("capacity") != "spot":
                continue
            lo, hi = nodes.ranges[t]
            s = Stream("spot", float(spec["reclaims_per_node_hour"]) * (hi - lo) / 3600, list(range(lo, hi)),
                       [1.0] * (hi - lo), context.rng("cluster", "spot", str(t)))
            s.outage_s = float(spec.get("reclaim_outage_s", 0.0))
            out.append(s)
        return out

    def _gpu_types(self, config, topo) -> list[dict]:
        """The node groups: ``gpu_types`` checked against the topology, or one group of the
        topology's device."""
        types = config.get("gpu_types")
        if not types:
            return [{"name": config.get("reference_type", self.device.name), "nodes": int(topo.nodes)}]
        keys = [(t["name"], t.get("capacity", "on_demand")) for t in types]
        if len(set(keys)) != len(keys):
            raise UsageError(f"{self.instance_name}: gpu_types names a type twice with the same capacity "
                             f"({', '.join(n + '/' + c for n, c in keys)})")
        for t in types:
            if t.get("capacity") == "spot" and t.get("reclaims_per_node_hour") is None:
                raise UsageError(f"{self.instance_name}: gpu_types {t['name']} is spot capacity and needs "
                                 "reclaims_per_node_hour (how often the provider takes a node back)")
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
        if job.fractional:
            self._fractional(job)
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
        for by in ("user", "group"):
            cap = self._quota(by, job)
            if cap is not None and job.gpus > cap:
                raise UsageError(f"workload: job {job.job_id} asks for {job.gpus} GPUs; the quota of its {by} "
                                 f"{getattr(job, by)!r} is {cap} (quotas.{by})")
        for res, total in self.totals.items():
            if total is not None and getattr(job, res) > total:
                raise UsageError(f"workload: job {job.job_id} asks for {getattr(job, res):g} {res}; the cluster "
                                 f"has {total:g} (node_{'cpus' if res == 'cpu' else res} × nodes)")
        if self.limits.size:
            self._check_node_limits(job)
        self._observe()
        job.run_overhead_s = 0.0
        job.queued_at = self.context.env.now
        self.queue.append(job)
        self._schedule()

    def no_more_jobs(self):
        self._closed = True

    # -- fractional GPUs ----------------------------------------------------------------------

    def _fractional(self, job) -> None:
        """*job* asks for part of a GPU: its share (its ``gpus`` from now on) under the sharing
        mode of the node groups that take it (see :mod:`labsim_cluster.fractional`)."""
        where = f"workload.trace line {job.line}" if job.line else "workload"
        errors, share, types = [], None, []
        for t, spec in enumerate(self.shared.specs):
            try:
                share = share_of(job, spec, self.shared.devices[t], where)
                types.append(t)
            except UsageError as ex:
                errors.append((spec is None, str(ex)))
        if share is None:   # why a node group that shares GPUs refused it, if one does
            raise UsageError(f"{self.instance_name}: {min(errors)[1]}")
        job.gpus = share
        job.share_types = tuple(types)

    def _check_node_limits(self, job) -> None:
        """Exit 2 when no node can hold *job*'s CPUs and memory: a whole-GPU job's share per GPU
        on as many GPUs as it asks for, a fractional job's whole request on one node."""
        limits = self.limits
        nodes = (f"node_cpus {self.config.get('node_cpus')}, node_mem_gib {self.config.get('node_mem_gib')}")
        if job.fractional:
            if not limits.fits_a_node(job):
                raise UsageError(f"workload: job {job.job_id} asks for {job.cpu:g} cpu and {job.mem_gib:g} mem_gib "
                                 f"on part of one GPU; no node has that much ({nodes})")
        elif limits.per_node(job) * max(hi - lo for lo, hi in self.nodes.ranges) < job.gpus:
            raise UsageError(f"workload: job {job.job_id} asks for {job.cpu:g} cpu and {job.mem_gib:g} mem_gib over "
                             f"{job.gpus} GPUs; a node holds {limits.per_node(job)} of its GPUs with their share "
                             f"({nodes}), so it fits on no set of nodes")

    def _place_shared(self, job, gtype: int | None):
        """``(type, shared GPU, new)`` for fractional *job*: the fullest shared GPU that takes
        it, else a whole free GPU taken for sharing; None when neither is there."""
        types = job.share_types
        if gtype is not None:   # a policy's choice (Gavel's rounds): only if that group shares GPUs
            types = (gtype,) if gtype in types else ()
        limits = self.limits
        asks = limits.size and any(getattr(job, name) > 0 for name in limits.size)
        node_ok = (lambda node: limits.holds(job, node)) if asks else None
        for t in types:
            gpu = self.shared.find(job, t, node_ok)
            if gpu is not None:
                return t, gpu, False
        cap = [f if limits.holds(job, n) else 0 for n, f in enumerate(self.nodes.free)] if asks else None
        for t in types:
            where = self.nodes.place(1, t, self.placement, cap)
            if where is not None:
                return t, self.shared.open(where[0][0], t), True
        return None

    def _accrue(self, job) -> None:
        """Count the work *job* has not done beside its GPU's other tenants since its speed was
        last set as time that did no work (its run's overhead)."""
        now = self.context.env.now
        start = max(job.share_since, job.work_from)
        if job.share_speed < 1.0 and now > start:
            job.run_overhead_s += (1.0 - job.share_speed) * (now - start)
        job.share_since = now

    def _rerate(self, gpu, skip=None) -> None:
        """Set the speed of every training tenant of shared *gpu* for its tenants now, and move
        the end of their runs (all but *skip*, which the caller arms)."""
        now = self.context.env.now
        speeds = self.shared.speeds(gpu)
        for j in gpu.tenants:
            new = speeds.get(id(j), 1.0)
            if j is skip:
                j.share_speed, j.share_since = new, now
                continue
            if new == j.share_speed:
                continue
            self._accrue(j)
            j.share_speed = new
            done = max(0.0, now - j.run_began - j.run_overhead_s) * j.rate if now >= j.work_from else 0.0
            left = max(0.0, j.remaining_s - done)
            self._arm(j, max(0.0, j.work_from - now) + left / (j.rate * new))

    # -- quotas and resources -----------------------------------------------------------------

    def _quota(self, by: str, job) -> int | None:
        caps = self.quotas[by]
        if not caps:
            return None
        key = job.user if by == "user" else job.group
        return caps.get(key, caps.get("*"))

    def allowed(self, job, held: dict | None = None, res: dict | None = None) -> bool:
        """Whether *job* may start now under its user's and project's quotas and the cluster's
        CPUs and memory (*held*/*res*: GPUs per key and resources counted so far, default the
        running jobs')."""
        held = held or self.held_by
        for by in ("user", "group"):
            cap = self._quota(by, job)
            if cap is not None and held[by].get(job.user if by == "user" else job.group, 0) + job.gpus > cap:
                return False
        res = res or self.held_res
        for name, total in self.totals.items():
            if total is not None and res[name] + getattr(job, name) > total + 1e-9:
                return False
        return True

    def _hold(self, job, sign: int, held: dict | None = None, res: dict | None = None) -> None:
        """Count *job*'s GPUs, CPUs and memory in (*sign* −1: out of) what its user and project
        hold (*held*/*res*: a tally of a ranking's, default the running jobs')."""
        actual = held is None
        held = self.held_by if held is None else held
        res = self.held_res if res is None else res
        for by, key in (("user", job.user), ("group", job.group)):
            held[by][key] = held[by].get(key, 0) + sign * job.gpus
            if actual and (job.cpu or job.mem_gib):
                mine = self.res_by[by].setdefault(key, [0.0, 0.0])
                mine[0] += sign * job.cpu
                mine[1] += sign * job.mem_gib
        for name in res:
            res[name] += sign * getattr(job, name)

    def _all_allowed(self, jobs) -> bool:
        """Whether *jobs* may all start together beside the running ones, quotas and
        CPUs/memory counted."""
        if not self.limited:
            return True
        held = {by: dict(v) for by, v in self.held_by.items()}
        res = dict(self.held_res)
        for j in jobs:
            if not self.allowed(j, held, res):
                return False
            self._hold(j, +1, held, res)
        return True

    # -- placement ----------------------------------------------------------------------------

    def _where(self, job, gtype: int | None = None) -> tuple[int, list[tuple[int, int]]] | None:
        """``(type, [(node, gpus)])`` for *job* (on type *gtype* if given), or None when its
        GPUs are not free. Without a type, the type with the most free GPUs that runs the job
        (heterogeneity-agnostic)."""
        nodes = self.nodes
        if gtype is not None:
            where = self.limits.place(job, gtype, self.placement, self.context.env.now)
            return None if where is None else (gtype, where)
        if len(self.type_specs) == 1:
            where = self.limits.place(job, 0, self.placement, self.context.env.now)
            return None if where is None else (0, where)
        order = sorted(range(len(self.type_specs)), key=lambda t: (-nodes.free_by_type[t], t))
        for t in order:
            if nodes.free_by_type[t] < job.gpus or self.rates.type_speed(job, t) <= 0:
                continue
            where = self.limits.place(job, t, self.placement, self.context.env.now)
            if where is not None:
                return t, where
        return None

    # -- running ------------------------------------------------------------------------------

    def _start(self, job, gtype: int | None = None) -> bool:
        if self.limited and not self.allowed(job):
            return False
        gpu = None
        if job.fractional:
            shared = self._place_shared(job, gtype)
            if shared is None:
                return False
            t, gpu, new = shared
            where = [(gpu.node, 1)]
            if new:
                self.nodes.take(where, self.context.env.now)
            self.shared.join(gpu, job)
            self.limits.take(job, [(gpu.node, job.gpus)])   # its whole CPUs and memory there
        else:
            found = self._where(job, gtype)
            if found is None:
                return False
            t, where = found
            self.nodes.take(where, self.context.env.now)
            self.limits.take(job, where)
        if self.tally:
            self._hold(job, +1)
        env = self.context.env
        job.nodes = where
        job.gpu_type = self.type_specs[t]["name"]
        job.type_index = t
        slow = self.rates.slowdown(job, t, where) if job.gpus > 1 else 1.0
        # a service's or a session's duration is its lifetime: where it runs does not stretch it
        job.rate = self.rates.type_speed(job, t) / slow if job.category == TRAINING else 1.0
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
        oom = self._oom_after(job, t)
        if self.random_failures:
            first = self.failures.at_start(job, oom)
        else:
            first = None if oom is None else ("oom", oom)
        if first is not None:
            kind, after = first
            if kind == "image_pull":
                job.run_overhead_s += after   # the pull holds the GPUs and does no work
            job.first_fail = (kind, env.now + after)
        job.work_from = env.now + job.run_overhead_s
        job.share_speed, job.share_since = 1.0, env.now
        if gpu is not None:
            self._rerate(gpu, skip=job)
        self._arm(job, job.remaining_s / (job.rate * job.share_speed) + job.run_overhead_s)
        return True

    def _oom_after(self, job, t: int) -> float | None:
        """Seconds into a run of *job* on type *t* at which it runs out of GPU memory (its
        first iteration), or None: it fits, or its memory is unknown (labsim-training predicts
        it for jobs given by model)."""
        if job.shape is None or job.pricer is None:
            return None
        device = self.type_specs[t].get("device")
        gpu = self.shared.gpu_of(job)
        if gpu is not None and gpu.mode == "mig":
            device = self.shared.instance(job)   # its instance's memory slices are all it has
        need, have = job.pricer.memory_gib(job.shape, job.whole_gpus, device)
        if not have or need <= have:
            return None
        return job.pricer.iteration_time(job.shape, job.whole_gpus, device)

    def _arm(self, job, run_s: float) -> None:
        """Wake *job*'s current run when it ends, *run_s* seconds from now: completed, or
        failed by what it met at its start or a fault of its own GPUs drawn now."""
        env = self.context.env
        token = job.token = object()
        fail = None
        if job.first_fail is not None and job.first_fail[1] - env.now < run_s:
            fail = (job.first_fail[0], max(0.0, job.first_fail[1] - env.now))
        elif self.random_failures:
            fail = self.failures.during(job, run_s)
        if fail is not None:
            kind, after = fail
            job.ends_at = env.now + after
            env.timeout(after).callbacks.append(lambda _e, j=job, t=token, k=kind: self._fail(j, t, k))
        else:
            job.ends_at = env.now + run_s
            env.timeout(run_s).callbacks.append(lambda _e, j=job, t=token: self._finish(j, t))
        self._arm_streams(job.ends_at)

    # -- incidents: node failures, leaf partitions, spot reclaims ------------------------------

    def _arm_streams(self, horizon: float) -> None:
        """Arm the incident streams whose next incident comes by *horizon* (a running job's end):
        later ones wait until a job runs then (see :mod:`labsim_cluster.failures`)."""
        env = self.context.env
        for st in self.streams:
            if st.token is None and st.next_at <= horizon:
                token = st.token = object()
                env.timeout(max(0.0, st.next_at - env.now)).callbacks.append(
                    lambda _e, s=st, t=token: self._incident(s, t))

    def _incident(self, stream, token) -> None:
        if stream.token is not token:
            return
        stream.token = None
        self._observe()
        self._apply(stream, hit_jobs=True)
        self._arm_streams(max((j.ends_at for j in self.running), default=-1.0))
        self._schedule()

    def _catch_up(self) -> None:
        """Apply the incidents drawn for times when no job ran (their nodes may still be
        down), and put back the nodes whose outage has ended."""
        now = self.context.env.now
        for st in self.streams:
            while st.token is None and st.next_at <= now:
                self._apply(st, hit_jobs=False)
        if self.nodes.down:
            self._restore(now)

    def _apply(self, stream, hit_jobs: bool) -> None:
        at, target = stream.take()
        kind, outage = stream.kind, stream.outage_s
        if kind == "partition":
            hit = [j for j in self.running if len(j.nodes) > 1
                   and any(self.nodes.leaf_of[n] == target for n, _ in j.nodes)] if hit_jobs else []
            for j in hit:
                if self.failures.effect == "stall":
                    self._stall(j, at + outage)
                else:
                    self._interrupt(j, "partition")
            if at + outage > self.context.env.now:
                self.limits.partition(target, at + outage)   # new multi-node jobs keep off it meanwhile
            name = f"leaf {target}"
        else:
            hit = [j for j in self.running if any(n == target for n, _ in j.nodes)] if hit_jobs else []
            for j in hit:
                if kind == "spot":
                    self._reclaim(j)
                else:
                    self._interrupt(j, "node")
            if at + outage > self.context.env.now:
                self.nodes.set_down(target, at, at + outage, self.context.env.now)
            name = f"node {target}"
        self.events.append((self.instance_name, at, INCIDENT[kind], name, _STATE[kind], float(len(hit)), None,
                            outage))

    def _stall(self, job, until: float) -> None:
        """A partition stops *job*'s progress until *until*; its run ends that much later."""
        now = self.context.env.now
        extra = until - max(now, job.stall_until)
        if extra <= 0:
            return
        job.stall_until = until
        job.run_overhead_s += extra
        if job.first_fail is not None:
            job.first_fail = (job.first_fail[0], job.first_fail[1] + extra)
        self._arm(job, job.run_began + job.run_overhead_s + job.remaining_s / job.rate - now)

    def _restore(self, now: float) -> None:
        self.nodes.restore_due(now)

    def _arm_repair(self) -> None:
        """While jobs wait, wake the cluster when the next down node comes back (or the next
        partition ends)."""
        if not self.queue:
            return
        ends = [*self.nodes.down.values(), *self.limits.partition_ends(self.context.env.now)]
        if not ends:
            return
        at = min(ends)
        if self._repair_token is not None and self._repair_token[1] == at:
            return
        token = self._repair_token = (object(), at)
        self.context.env.timeout(max(0.0, at - self.context.env.now)).callbacks.append(
            lambda _e, t=token: self._repaired(t))

    def _repaired(self, token) -> None:
        if token is not self._repair_token:
            return
        self._repair_token = None
        self._observe()
        self._schedule()

    # -- the end of a run -----------------------------------------------------------------------

    def _fail(self, job, token, kind: str) -> None:
        """*job*'s run fails (*kind*): see :meth:`_interrupt`."""
        if job.token is not token:
            return
        self._observe()
        self._interrupt(job, kind)
        self._schedule()

    def _interrupt(self, job, kind: str) -> None:
        """*job*'s run fails: the work since its last checkpoint is lost; it retries after a
        backoff, or fails for good after ``max_retries``."""
        env = self.context.env
        if self.monitor is not None:
            self.monitor.interrupted(env.now)
        attempt = self._stop(job)
        lost = self._lose(job)
        self.attempts.append(_attempt(attempt, "interrupted", lost, job, kind))
        self.lost_by_kind[kind] += lost
        self.by_kind[kind] += 1
        job.failures += 1
        self.interruptions += 1
        if job.failures > self.failures.max_retries:
            job.end_s = env.now
            self._record(job, "failed")
            return
        env.timeout(self.failures.backoff(job.failures)).callbacks.append(lambda _e, j=job: self._requeue(j))

    def _reclaim(self, job) -> None:
        """The provider takes back a spot node under *job*: it loses the work since its last
        checkpoint and queues again at once."""
        attempt = self._stop(job)
        lost = self._lose(job)
        self.attempts.append(_attempt(attempt, "reclaimed", lost, job, "spot"))
        self.lost_by_kind["spot"] += lost
        self.by_kind["spot"] += 1
        job.reclaims += 1
        self.reclaims += 1
        job.queued_at = self.context.env.now
        self.queue.append(job)

    def _lose(self, job) -> float:
        """Roll *job* back to its last checkpoint; the GPU-seconds lost (a service or a session
        loses nothing: it starts again where it was)."""
        if not job.preemptible:
            return 0.0
        kept = self.failures.kept(job.attained_s)
        lost = (job.attained_s - kept) * job.gpus
        self.lost_gpu_s += lost
        job.attained_s = kept
        return lost

    def _requeue(self, job) -> None:
        self._observe()
        job.queued_at = self.context.env.now
        self.queue.append(job)
        self._schedule()

    def _stop(self, job) -> tuple:
        """Take *job* off its GPUs; the start of its ``attempts`` row (the caller adds how it
        ended and what it lost)."""
        env = self.context.env
        gpu = self.shared.gpu_of(job)
        if gpu is not None:
            self._accrue(job)
        overhead = job.run_overhead_s - max(0.0, job.stall_until - env.now)  # a stall not yet over
        ran = max(0.0, env.now - job.run_began - overhead)
        work = min(ran * job.rate, job.duration_s - job.attained_s)
        if gpu is not None:   # beside other tenants: what it made of the time it could work
            working = env.now - job.work_from
            job.run_speed = work / working if working > 0 else job.rate
        job.attempts += 1
        held = (env.now - job.run_began) * job.gpus
        cost = held / 3600 * self.prices[job.type_index]
        job.cost_usd += cost
        row = (self.instance_name, job.job_id, job.attempts, job.gpus,
               " ".join(f"{n}:{g}" for n, g in job.nodes), job.run_began, env.now, work, cost)
        job.attained_s = min(job.duration_s, job.attained_s + ran * job.rate)
        job.service_s += ran
        job.type_s[job.type_index] = job.type_s.get(job.type_index, 0.0) + (env.now - job.run_began)
        self.alloc_gpu_s += held
        self.busy_gpu_s += held * job.busy_share
        self.busy_by_type[job.type_index] += held * job.busy_share
        job.busy_gpu_s += held * job.busy_share
        job.held_gpu_s += held
        for by, key in (("user", job.user), ("group", job.group)):
            done = self.attained_by_key[by]
            done[key] = done.get(key, 0.0) + ran * job.gpus
            spent = self.cost_by[by]
            spent[key] = spent.get(key, 0.0) + cost
        if gpu is None:
            self.nodes.give(job.nodes, env.now)
            self.limits.give(job, job.nodes)
        else:
            self.limits.give(job, [(job.nodes[0][0], job.gpus)])
            if self.shared.leave(job) is not None:
                self.nodes.give(job.nodes, env.now)      # its last tenant left: the GPU is whole again
        if self.tally:
            self._hold(job, -1)
        job.nodes = []
        job.run_began = None
        job.token = None
        job.stall_until = 0.0
        job.first_fail = None
        job.share_speed = 1.0
        self.running.remove(job)
        if gpu is not None and gpu.tenants:
            self._rerate(gpu)
        return row

    def _finish(self, job, token) -> None:
        if job.token is not token:
            return  # preempted since
        env = self.context.env
        self._observe()
        self.attempts.append(_attempt(self._stop(job), "completed", 0.0, job, ""))
        job.attained_s = job.duration_s
        job.end_s = env.now
        self.finished += 1
        training = job.category == TRAINING
        self.records.append((job.gpus, job.duration_s, job.arrival_s, job.start_s, job.end_s, job.user,
                             job.preemptions, training))
        if training:
            self.training_held_s += job.held_gpu_s
        else:
            self.kind_jobs.append(job)              # services and sessions: few, kept whole
        self._record(job, "completed")
        self.notify_finished(job)
        self._schedule()

    def _preempt(self, job) -> None:
        self.attempts.append(_attempt(self._stop(job), "preempted", 0.0, job, ""))
        job.preemptions += 1
        job.queued_at = self.context.env.now
        self.queue.append(job)

    def _record(self, job, status: str) -> None:
        if status == "failed":
            self.failed += 1
        self.table.append((self.instance_name, job.job_id, job.user, job.group, job.gpus, job.duration_s,
                           job.arrival_s, job.start_s, job.end_s, job.end_s - job.arrival_s,
                           job.start_s - job.arrival_s, job.preemptions, job.failures, job.reclaims,
                           job.cost_usd, status, job.category, job.busy_gpu_s))

    def attained_all(self, now: float, by: str = "user") -> dict[str, float]:
        """GPU-seconds each user's (or project's) jobs have run so far (fair share)."""
        totals = dict(self.attained_by_key[by])
        for j in self.running:
            if j.run_began is not None:
                key = j.user if by == "user" else j.group
                totals[key] = totals.get(key, 0.0) + max(0.0, now - j.run_began - j.run_overhead_s) * j.gpus
        return totals

    def _schedule(self) -> None:
        if self.streams:
            self._catch_up()
        self._decide()
        self._arm_repair()
        if self.usage is not None:
            busy = self.capacity - self.nodes.total_free - self.nodes.down_gpus
            self.usage.append((self.instance_name, self.context.env.now, busy, len(self.running), len(self.queue)))

    def _decide(self) -> None:
        env = self.context.env
        if getattr(self.policy, "rounds", False):
            self._assign(self.policy.assign(env.now))
            self._arm_rerank()
        elif getattr(self.policy, "preemptive", False):
            if sum(j.gpus for j in self.queue) <= self.nodes.total_free and self._all_allowed(self.queue):
                # everyone fits: the ranking would keep every job, so preempt nobody
                for j in sorted(self.queue, key=lambda j: self.policy.priority(j, env.now)):
                    self._start(j)
                self._arm_rerank()
                return
            jobs = self.running + self.queue
            # running services and sessions keep their GPUs: they rank before everyone
            ranked = sorted(jobs, key=lambda j: (j.preemptible or j.run_began is None,
                                                 self.policy.priority(j, env.now)))
            room, keep = self.capacity - self.nodes.down_gpus, []
            held = {"user": {}, "group": {}}
            res = dict.fromkeys(self.held_res, 0.0)
            limited = self.limited
            for j in ranked:
                if j.gpus <= room and (not limited or self.allowed(j, held, res)):
                    keep.append(j)
                    room -= j.gpus
                    if limited:
                        self._hold(j, +1, held, res)
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
            limited = self.limited
            if limited:  # over their quota (or the CPUs/memory) now: they wait, blocking nobody
                queue = [j for j in queue if self.allowed(j)]
            free = self.nodes.total_free + (self.shared.free_share() if self.shared.gpus else 0)
            for j in self.policy.pick(queue, free, env.now):
                if limited and not self.allowed(j):
                    continue  # over its quota with the jobs started before it in this pass
                if not self._start(j) and blocking:
                    break  # the head's GPUs are free but not on one type / in one placement: it waits

    def _assign(self, plan: list[tuple]) -> None:
        """Run the round's plan ``[(job, type)]`` (best first): a running job planned on another
        type, or not planned, is preempted; the planned jobs that wait start on their type."""
        want = {id(j): t for j, t in plan}
        for j in [j for j in self.running if want.get(id(j), -1) != j.type_index and j.preemptible]:
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
        _, _, arr, start, end = rec.T
        queue = start - arr
        makespan = float(end.max() - arr.min())
        # job completion times: of the training jobs (a service or a session ends when its time is up)
        trained = [r for r in self.records if r[7]]
        rec = np.asarray([r[:5] for r in trained], dtype=float).reshape(-1, 5)
        gpus, dur, tarr, _, tend = rec.T
        jct = tend - tarr

        def stats(x):
            if not len(x):
                return {"mean": None, "p50": None, "p99": None}
            return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)),
                    "p99": float(np.percentile(x, 99))}

        def hours(x):
            return {k: (None if v is None else v / 3600) for k, v in stats(x).items()}

        users: dict[str, list[float]] = {}
        for r in trained:
            users.setdefault(r[5], []).append((r[4] - r[2]) / r[1])
        slow = np.asarray([np.mean(v) for v in users.values()])
        jain = float(slow.sum() ** 2 / (len(slow) * (slow ** 2).sum())) if len(slow) else None
        types, by_capacity = {}, {}
        usd = usd_busy = 0.0
        names = [spec["name"] for spec in self.type_specs]
        for t, spec in enumerate(self.type_specs):
            price = self.prices[t]
            held = self.nodes.capacity_by_type[t] * makespan / 3600
            busy = self.busy_by_type[t] / 3600
            usd += held * price
            usd_busy += busy * price
            capacity = spec.get("capacity", "on_demand")
            by_capacity[capacity] = by_capacity.get(capacity, 0.0) + held * price
            label = spec["name"] if names.count(spec["name"]) == 1 else f"{spec['name']} ({capacity})"
            types[label] = {"gpus": self.nodes.capacity_by_type[t], "capacity": capacity,
                            "usd_per_gpu_hour": price, "busy_gpu_hours": busy,
                            "utilisation": busy / held if held else None, "usd": held * price}
        held_h = self.capacity * makespan / 3600
        busy_h = self.busy_gpu_s / 3600
        by_size = {}
        for label, lo, hi in SIZE_CLASSES:
            mask = (gpus >= lo) & (gpus <= hi)
            if mask.any():
                by_size[label] = {"jobs": int(mask.sum()), **hours(jct[mask])}
        multi = sum(self.runs.values())
        kinds = {j.category for j in self.kind_jobs} | ({TRAINING} if trained else set())
        return {
            "type": self.name,
            "scheduler": self.config["scheduler"]["type"],
            "jobs": {"finished": self.finished, "failed": self.failed,
                     "unfinished": len(self.queue) + len(self.running),
                     "preemptions": int(sum(r[6] for r in self.records)),
                     "interruptions": self.interruptions, "reclaims": self.reclaims},
            "gpu_hours_lost_to_failures": self.lost_gpu_s / 3600,
            "jct_h": hours(jct),
            "jct_h_by_size": by_size,
            "queueing_h": hours(queue),
            "makespan_h": makespan / 3600,
            "gpu_utilisation": busy_h / held_h if held_h else None,
            "fairness_jain": jain,
            "gpu_hours": {"held": held_h, "allocated": self.alloc_gpu_s / 3600, "busy": busy_h},
            **({"gpu_allocation": self.alloc_gpu_s / 3600 / held_h if held_h else None,
                "by_kind": by_kind(len(self.records) - len(self.kind_jobs), self.training_held_s, self.kind_jobs,
                                   self._price_of)} if len(kinds) > 1 or TRAINING not in kinds
               else {}),
            "placement": {"rule": self.placement, "multi_gpu_runs": multi, "runs": dict(self.runs),
                          "split_runs": self.split,
                          "mean_slowdown": float(np.mean(self.slowdowns)) if self.slowdowns else 1.0,
                          "fragmentation": self.nodes.fragmentation(float(end.max()))},
            **({"gpu_types": types} if len(types) > 1 else {}),
            "cost": {"usd": usd, "usd_busy": usd_busy, "usd_idle": usd - usd_busy,
                     **({"usd_allocated": sum(self.cost_by["user"].values())} if self.alloc_gpu_s != self.busy_gpu_s
                        else {}),
                     "usd_per_gpu_hour": usd / held_h if held_h else None,
                     "by_capacity": by_capacity,
                     "by_user": dict(sorted(self.cost_by["user"].items())),
                     "by_group": dict(sorted(self.cost_by["group"].items()))},
            **({"failures": self._failure_summary(float(end.max()))}
               if self.random_failures or self.streams or any(self.by_kind.values()) else {}),
            **({"alerts": self._alerts()} if self.monitor is not None else {}),
        }

    def _price_of(self, job) -> float:
        """USD per GPU-hour of the GPU type *job* last ran on."""
        return self.prices[job.type_index]

    def _failure_summary(self, end: float) -> dict:
        """Failures by kind, the GPU-hours each lost, the incidents and the node-hours down."""
        incidents = {INCIDENT[st.kind]: 0 for st in self.streams}
        for st in self.streams:
            incidents[INCIDENT[st.kind]] += st.count
        return {"by_kind": dict(self.by_kind),
                "gpu_hours_lost_by_kind": {k: v / 3600 for k, v in self.lost_by_kind.items()},
                "incidents": incidents,
                "node_hours_down": self.nodes.down_node_s(end) / 3600}

    def _alerts(self) -> dict:
        now = self.context.env.now
        self.monitor.observe(now)
        return self.monitor.summary(now)


_STATE = {"node": "down", "partition": "partitioned", "spot": "reclaimed"}


def _attempt(row: tuple, outcome: str, lost: float, job, failure: str) -> tuple:
    """An ``attempts`` row: the run's *row* from :meth:`Cluster._stop` (its cost last), how it
    ended, the GPU-seconds it lost, where it ran (GPU type, locality, speed), the failure kind
    that ended it (empty: none) and what its GPUs cost."""
    *head, cost = row
    speed = job.rate if job.run_speed is None else job.run_speed
    return (*head, outcome, lost, job.gpu_type, job.locality, speed, failure, cost)

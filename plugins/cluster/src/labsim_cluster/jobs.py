"""Cluster jobs and the ``jobs`` workload: a trace, or a generator.

``workload: {type: jobs, trace: builtin:tiresias_60job}`` replays a trace in labsim's normalized
schema (``job_id, submit_time_s, duration_s, num_gpus`` required; ``user, group, job_type,
priority`` optional; other columns ignored); ``trace: path.csv`` reads your own, with
``columns: {num_gpus: gpus, ...}`` mapping other names. A bad row exits 2 naming the row and
the column. ``generate: {...}`` draws jobs instead: Poisson arrivals at ``rate_per_hour``,
``num_gpus`` from weighted choices, durations from a distribution, users round-robin from a
list. Every target framework (a scheduling policy) gets the identical jobs.

Jobs are training jobs, inference services or interactive sessions (``job_type: inference`` /
``interactive``, :mod:`labsim_cluster.kinds`); a job may ask for part of one GPU
(``gpu_fraction``, ``mps_percentage``, ``mig_profile``: :mod:`labsim_cluster.fractional`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import labsim
from labsim.errors import UsageError

from labsim_cluster.kinds import (INFERENCE, INTERACTIVE, INTERACTIVE_SCHEMA, SERVICES_SCHEMA, TRAINING, Services,
                                  Sessions, kind_of)
from labsim_cluster.readers import SCHEMA as READER_SCHEMA
from labsim_cluster.readers import read_gavel, read_helios, read_pai, read_philly, read_pollux, read_tiresias

CLUSTER_JOBS = "cluster jobs"
REQUIRED = ("job_id", "submit_time_s", "duration_s", "num_gpus")
OPTIONAL = ("user", "group", "job_type", "priority", "model", "steps", "seq_len", "global_batch_size", "cpu",
            "mem_gib", "service", "replicas", "gpu_fraction", "mps_percentage", "mig_profile")
BUILTIN = {"tiresias_60job": "tiresias_60job.csv", "gavel_philly": "gavel_philly_vc6214e9_seed0.csv"}


@dataclass(eq=False, slots=True)
class Job:
    """One job as the cluster sees it; the cluster fills in its life as it runs (slots: a
    month-scale trace holds 100,000 of them)."""

    job_id: str
    gpus: int
    duration_s: float
    arrival_s: float
    user: str = ""
    group: str = ""
    kind: str = ""
    priority: int = 0
    cpu: float = 0.0                 # CPU cores it asks for (0: not given)
    mem_gib: float = 0.0             # host memory it asks for, GiB (0: not given)
    category: str = TRAINING         # training, inference or interactive (labsim_cluster.kinds)
    service: str = ""                # inference: its service in workload.services
    replicas: int = 0                # inference: model replicas
    capacity_rps: float = 0.0        # inference: requests/s a replica serves within its SLOs (0: not priced)
    tokens_per_s: float = 0.0        # inference: output tokens/s a replica serves at that capacity
    busy_share: float = 1.0          # share of its held GPU-time its GPUs compute (sessions: < 1)
    gpu_fraction: float = 0.0        # part of one GPU it asks for (labsim_cluster.fractional)
    mps_percentage: float = 0.0      # MPS active thread percentage it asks for
    mig_profile: str = ""            # MIG GPU instance it asks for
    membound: float | None = None    # memory-bound share of its GPU work (None: not known)
    line: int = 0                    # its trace line (0: generated)
    # set by the cluster
    attained_s: float = 0.0          # seconds of work done (of duration_s)
    start_s: float | None = None     # first start
    end_s: float | None = None
    preemptions: int = 0
    failures: int = 0
    run_began: float | None = None   # start of the current run
    attempts: int = 0                # runs started so far (the attempts table's numbering)
    queued_at: float = 0.0           # when it last joined the queue (submitted, preempted, requeued)
    nodes: list = field(default_factory=list)
    predict: tuple | None = None     # (model, steps, seq_len, global_batch_size, line) to price
    shape: tuple | None = None       # (model, seq_len, global_batch_size) of a priced training job
    pricer: object = None            # the workload: iteration_time(shape, gpus, device=, topology=), memory_gib
    rate: float = 1.0                # work-seconds per second in the current run (type and placement)
    service_s: float = 0.0           # seconds it has run, whatever its speed (attained service)
    gpu_type: str = ""               # the GPU type of the current (or last) run
    type_index: int = 0              # its index in the cluster's gpu_types
    locality: str = ""               # node / leaf / spine: where the current (or last) run sits
    type_s: dict = field(default_factory=dict)  # GPU type index → seconds run on it (Gavel's shares)
    ends_at: float = 0.0             # when the current run ends (completes or fails)
    stall_until: float = 0.0         # a partition stalls the current run until then
    first_fail: tuple | None = None  # (kind, at) a failure the current run met at its start
    reclaims: int = 0                # runs ended by a spot reclaim
    cost_usd: float = 0.0            # what its runs' GPUs cost
    busy_gpu_s: float = 0.0          # GPU-seconds its runs kept their GPUs computing
    held_gpu_s: float = 0.0          # GPU-seconds its runs held (a fraction counts as its share)
    run_overhead_s: float = 0.0      # seconds of the current run that do no work (restore, pull, stalls)
    token: object = None             # the current run's wake-up (stale wake-ups are ignored)
    share_speed: float = 1.0         # on a shared GPU: its speed beside the other tenants
    share_since: float = 0.0         # when share_speed was last set
    work_from: float = 0.0           # when the current run's work began (after restore, pull)
    run_speed: float | None = None   # a shared GPU's run: the work-seconds per second it made
    share_types: tuple = ()          # a fractional job: the GPU types whose sharing takes it

    @property
    def fractional(self) -> bool:
        """Whether it asks for part of one GPU (labsim_cluster.fractional)."""
        return bool(self.gpu_fraction or self.mps_percentage or self.mig_profile)

    @property
    def whole_gpus(self) -> int:
        """The GPUs its work is priced on: one for a fractional job."""
        return 1 if self.fractional else int(self.gpus)

    @property
    def preemptible(self) -> bool:
        """Whether a policy may preempt it: training jobs only (services and sessions keep
        their GPUs once they run)."""
        return self.category == TRAINING

    def fresh(self) -> Job:
        """A copy of this job as submitted, for one cluster to run (the fields the workload
        sets; the cluster's start at their defaults)."""
        job = Job(self.job_id, self.gpus, self.duration_s, self.arrival_s, self.user, self.group, self.kind,
                  self.priority, self.cpu, self.mem_gib, shape=self.shape, pricer=self.pricer)
        if self.category != TRAINING or self.fractional or self.membound is not None or self.line:
            for name in _KIND_FIELDS:
                setattr(job, name, getattr(self, name))
        return job

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.duration_s - self.attained_s)

    @property
    def attained_gpu_s(self) -> float:
        return self.attained_s * self.gpus


#: what a job's kind and GPU share add to it (copied by :meth:`Job.fresh` when set)
_KIND_FIELDS = ("category", "service", "replicas", "capacity_rps", "tokens_per_s", "busy_share", "gpu_fraction",
                "mps_percentage", "mig_profile", "membound", "line")


def _part_of_one(raw: str) -> bool:
    """Whether a gpu_fraction cell asks for part of a GPU (1: a whole one; above 1 is refused)."""
    try:
        return float(raw) != 1
    except ValueError:
        return True     # not a number: read (and refused) with the other columns


def _builtin_path(name: str) -> Path:
    if name not in BUILTIN:
        raise UsageError(f"workload.trace: no built-in trace {name!r}; built-in: "
                         f"{', '.join('builtin:' + k for k in BUILTIN)}")
    return Path(str(resources.files("labsim_cluster") / "data" / BUILTIN[name]))


def read_trace(path: Path, columns: dict | None = None, label: str = "workload.trace") -> list[Job]:
    """The jobs of a normalized-schema CSV (*columns* maps our names to the file's)."""
    columns = dict(columns or {})
    name_of = {k: columns.get(k, k) for k in REQUIRED + OPTIONAL}
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as ex:
        raise UsageError(f"{label}: cannot read {path}: {ex.strerror}") from None
    jobs = []
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [name_of[k] for k in REQUIRED if name_of[k] not in header]
        if missing:
            raise UsageError(f"{label}: {path.name} has no column {', '.join(missing)}; it has "
                             f"{', '.join(header) or 'no header'} (map names with workload.columns)")
        for row_no, row in enumerate(reader, start=2):
            def num(key, kind=float):
                raw = (row.get(name_of[key]) or "").strip()
                try:
                    return kind(float(raw))
                except ValueError:
                    raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[key]}: "
                                     f"{raw!r} is not a number") from None
            def text(key):
                return (row.get(name_of[key]) or "").strip()

            category = kind_of(text("job_type"))
            # the normalized schema's gpu_fraction 1 (or empty) is whole GPUs; below 1, part of one
            fractional = (bool(text("mps_percentage") or text("mig_profile"))
                          or (bool(text("gpu_fraction")) and _part_of_one(text("gpu_fraction"))))
            model = text("model")
            predict = None
            submit = num("submit_time_s")
            # a service's GPUs come from its engine, a session's or service's length may be left to
            # workload.interactive / the horizon, a fractional job runs on (part of) one GPU
            gpus = num("num_gpus", int) if text("num_gpus") or not (fractional or category != TRAINING) else 0
            if category != TRAINING and not text("duration_s"):
                duration = None
            elif category == TRAINING and model and not text("duration_s"):
                # a training job whose duration labsim-training predicts: steps × iteration time
                steps = num("steps", int)
                seq = num("seq_len", int) if text("seq_len") else 2048
                gbs = num("global_batch_size", int)
                predict = (model, steps, seq, gbs, row_no)
                duration = 1.0
            else:
                duration = num("duration_s")
            if fractional and not gpus:
                gpus = 1
            if submit < 0 or (duration is not None and duration <= 0) or (gpus < 1 and category == TRAINING):
                bad = ("submit_time_s" if submit < 0 else "duration_s" if duration is not None and duration <= 0
                       else "num_gpus")
                raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[bad]}: "
                                 f"{row.get(name_of[bad])!r}; allowed: submit ≥ 0, duration > 0, GPUs ≥ 1")
            prio = (row.get(name_of["priority"]) or "").strip()
            cpu = num("cpu") if (row.get(name_of["cpu"]) or "").strip() else 0.0
            mem = num("mem_gib") if (row.get(name_of["mem_gib"]) or "").strip() else 0.0
            if cpu < 0 or mem < 0:
                bad = "cpu" if cpu < 0 else "mem_gib"
                raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[bad]}: "
                                 f"{row.get(name_of[bad])!r}; allowed: a number ≥ 0")
            replicas = num("replicas", int) if text("replicas") else 0
            fraction = num("gpu_fraction") if text("gpu_fraction") else 0.0
            mps = num("mps_percentage") if text("mps_percentage") else 0.0
            for key, value, top, allowed in (("replicas", replicas, float("inf"), "an integer ≥ 1"),
                                             ("gpu_fraction", fraction, 1.0, "0 < f ≤ 1"),
                                             ("mps_percentage", mps, 100.0, "0 < p ≤ 100")):
                if text(key) and not 0 < value <= top:
                    raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[key]}: "
                                     f"{text(key)!r}; allowed: {allowed}")
            if fraction >= 1:
                fraction = 0.0
            if category == INFERENCE and not (text("service") or model):
                raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of['service']}: an inference "
                                 "job names its service (one of workload.services) or its model")
            jobs.append(Job(str(row[name_of["job_id"]]).strip(), gpus, duration or 0.0, submit,
                            user=(row.get(name_of["user"]) or "").strip(),
                            group=(row.get(name_of["group"]) or "").strip(),
                            kind=(row.get(name_of["job_type"]) or "").strip(),
                            priority=int(float(prio)) if prio else 0, cpu=cpu, mem_gib=mem, predict=predict,
                            category=category, service=text("service") or (model if category == INFERENCE else ""),
                            replicas=replicas, gpu_fraction=fraction,
                            mps_percentage=mps, mig_profile=text("mig_profile"), line=row_no))
    jobs.sort(key=lambda j: j.arrival_s)
    return jobs


DIST = {"$ref": "#/$defs/distribution"}

WORKLOAD_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "oneOf": [{"required": ["trace"]}, {"required": ["generate"]}],
    "properties": {
        "type": {"type": "string"},
        "trace": {"type": "string", "description": "A CSV in the normalized schema, or builtin:NAME "
                                                   "(builtin:tiresias_60job, builtin:gavel_philly)."},
        "columns": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Our column name → the file's (job_id, submit_time_s, duration_s, "
                                   "num_gpus, user, group, job_type, priority, cpu, mem_gib); format labsim."},
        **READER_SCHEMA,
        "time_scale": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                       "description": "Multiply submit times (0.5: arrivals twice as dense)."},
        "max_jobs": {"type": "integer", "minimum": 1, "description": "Only the first this many jobs."},
        "services": SERVICES_SCHEMA,
        "interactive": INTERACTIVE_SCHEMA,
        "horizon_s": {"type": "number", "exclusiveMinimum": 0,
                      "description": "When services without duration_s end (default: the last submit "
                                     "time of the trace)."},
        "predict": {
            "type": "object", "additionalProperties": False,
            "description": "How labsim-training prices a trace row that gives model, steps and "
                           "global_batch_size (and seq_len, default 2048) instead of duration_s: "
                           "steps × the iteration time of that job on its num_gpus GPUs of the cluster.",
            "properties": {"framework": {"type": "string", "default": "fsdp"},
                           "config": {"type": "object", "default": {},
                                      "description": "The training framework's settings."}}},
        "generate": {
            "type": "object", "additionalProperties": False, "required": ["jobs", "rate_per_hour"],
            "properties": {
                "jobs": {"type": "integer", "minimum": 1},
                "rate_per_hour": {"type": "number", "exclusiveMinimum": 0,
                                  "description": "Poisson arrivals."},
                "num_gpus": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                             "default": {"1": 0.7, "2": 0.1, "4": 0.1, "8": 0.1},
                             "description": "GPU count → weight."},
                "duration_s_dist_config": {**DIST, "default": {"type": "LogNormal", "mean": 3600,
                                                                "sigma": 7200, "min": 60}},
                "users": {"type": "array", "items": {"type": "string"}, "default": ["u0", "u1", "u2", "u3"]},
                "groups": {"type": "array", "items": {"type": "string"},
                           "description": "Projects, in turn like the users (default: none)."},
                "kinds": {"type": "object", "additionalProperties": False,
                          "properties": {k: {"type": "number", "minimum": 0}
                                         for k in ("training", "inference", "interactive")},
                          "default": {"training": 1},
                          "description": "Job kind → weight (inference: the services of workload.services "
                                         "in turn; interactive: sessions as workload.interactive says)."},
                "replicas": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                             "default": {"1": 1},
                             "description": "Inference jobs: replica count → weight."},
                "service_duration_s_dist_config": {**DIST, "description": "Inference jobs' lifetimes "
                                                                          "(default: until the horizon)."},
                "fractional": {
                    "type": "object", "additionalProperties": False, "required": ["share"],
                    "description": "Jobs of one GPU that ask for part of it instead: each cluster's sharing "
                                   "mode reads the request it knows.",
                    "properties": {
                        "share": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                  "properties": {
                                      "gpu_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                      "mps_percentage": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                                      "mig_profile": {"type": "string", "minLength": 1}}},
                        "training": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0,
                                     "description": "Share of the one-GPU training jobs that ask for it."},
                        "interactive": {"type": "number", "minimum": 0, "maximum": 1, "default": 1.0,
                                        "description": "Share of the sessions that ask for it."}}},
            },
        },
    },
}


def _draw_weighted(rng, table: dict, n: int, field: str, cast) -> list:
    """*n* of *table*'s keys (each made a value by *cast*) drawn by their weights (key → weight);
    weights summing to 0 exit 2 naming *field*."""
    weights = [float(v) for v in table.values()]
    if sum(weights) <= 0:
        raise UsageError(f"{field}: the weights sum to 0")
    return [cast(x) for x in rng.choice([cast(k) for k in table], size=n, p=[w / sum(weights) for w in weights])]


class JobsWorkload(labsim.Workload):
    """Cluster jobs from a trace or a generator, each submitted at its arrival time."""

    name = "jobs"
    makes = CLUSTER_JOBS
    config_schema = WORKLOAD_SCHEMA

    def __init__(self, config, context):
        super().__init__(config, context)
        self._iteration_cache: dict[tuple, float] = {}
        self.dropped = 0
        self.skipped: dict[str, int] = {}   # raw production traces: jobs left out, by reason
        topo = context.hardware.topology
        self.services = Services(config.get("services") or {}, context,
                                 int(getattr(topo, "gpus_per_node", 1) or 1) if topo is not None else 1,
                                 int(getattr(topo, "world_size", 1) or 1) if topo is not None else 1)
        self.sessions = None
        self.jobs = self._jobs()

    def _jobs(self) -> list[Job]:
        cfg = self.config
        if cfg.get("trace"):
            trace = str(cfg["trace"])
            path = Path(_builtin_path(trace[8:]) if trace.startswith("builtin:") else self.context.base_dir / trace)
            fmt = cfg.get("format", "labsim")
            if fmt != "labsim" and cfg.get("columns"):
                raise UsageError(f"workload.columns maps the normalized schema's names; format {fmt} has its own")
            if fmt == "tiresias":
                jobs = read_tiresias(path, "workload.trace", Job)
            elif fmt == "gavel":
                jobs, self.dropped = read_gavel(path, "workload.trace", Job, cfg.get("gavel") or {},
                                                self.context.base_dir)
            elif fmt == "pollux":
                jobs = read_pollux(path, "workload.trace", Job, cfg.get("pollux") or {})
            elif fmt in ("philly", "helios", "pai"):
                jobs, self.skipped = (read_pai(path, "workload.trace", Job, cfg.get("pai") or {}, self.context.base_dir)
                                      if fmt == "pai" else (read_philly if fmt == "philly" else read_helios)(
                                          path, "workload.trace", Job))
            else:
                jobs = read_trace(path, cfg.get("columns"))
            jobs.sort(key=lambda j: j.arrival_s)
        else:
            jobs = self._generate(cfg["generate"])
        self._predict(jobs)
        scale = float(cfg.get("time_scale", 1.0))
        if scale != 1.0:
            for j in jobs:
                j.arrival_s *= scale
        if cfg.get("max_jobs"):
            jobs = jobs[: int(cfg["max_jobs"])]
        self._kinds(jobs)
        return jobs

    def _kinds(self, jobs: list[Job]) -> None:
        """Fill in what services and sessions leave to the workload: a service's GPUs (its
        replicas × its engine's GPUs per replica) and lifetime (to the horizon), a session's
        length, busy share and cell intensity (see :mod:`labsim_cluster.kinds`)."""
        if not jobs:
            return
        horizon = float(self.config.get("horizon_s") or max(j.arrival_s for j in jobs))
        for job in jobs:
            where = (f"workload.trace line {job.line}" if job.line else f"workload.generate job {job.job_id}")
            if job.category == TRAINING:
                continue
            if job.category == INFERENCE:
                self.services.check(job.service, where)
                per = self.services.gpus_per_replica(job.service)
                replicas = job.replicas or 1
                if job.gpus and job.gpus != replicas * per and not job.gpu_fraction:
                    raise UsageError(f"{where}, column num_gpus: {job.gpus}; service {job.service!r} runs "
                                     f"{replicas} replica(s) of {per} GPU(s) (leave num_gpus empty)")
                job.replicas = replicas
                capacity = None if job.fractional else self.services.capacity(job.service)
                if capacity:
                    job.capacity_rps = capacity["requests_per_s"]
                    job.tokens_per_s = capacity["output_tokens_per_s"]
                if not (job.gpu_fraction or job.mps_percentage or job.mig_profile):
                    job.gpus = replicas * per
                elif replicas * per > 1:
                    raise UsageError(f"{where}: service {job.service!r} needs {replicas * per} GPUs; a fractional "
                                     "job runs on part of one GPU")
                if not job.duration_s:
                    job.duration_s = horizon - job.arrival_s
                    if job.duration_s <= 0:
                        raise UsageError(f"{where}, column duration_s: empty, and the service is submitted at "
                                         f"{job.arrival_s:g} s, not before the horizon ({horizon:g} s); give "
                                         "duration_s or workload.horizon_s")
            else:
                if self.sessions is None:
                    if not self.config.get("interactive"):
                        raise UsageError(f"{where}: an interactive job needs workload.interactive (the notebook's "
                                         "model, cells and think times)")
                    self.sessions = Sessions(self.config["interactive"], self.context)
                job.gpus = job.gpus or 1
                if not job.duration_s:
                    job.duration_s = self.sessions.session_s()
                _, job.membound = self.sessions.cell(job.gpus)
                job.busy_share = self.sessions.busy_s(job.duration_s, job.gpus) / job.duration_s

    def _predict(self, jobs: list[Job]) -> None:
        """Durations of the jobs given as (model, steps, batch): from labsim-training on the
        cluster's GPUs, one estimate per distinct job shape."""
        todo = [j for j in jobs if j.predict is not None]
        if not todo:
            return
        try:
            from labsim_training import estimate
        except ImportError:
            raise UsageError("workload.trace: rows give a model instead of duration_s, and pricing them "
                             "needs labsim-training (pip install labsim-training)") from None
        self._estimate = estimate
        for job in todo:
            model, steps, seq, gbs, line = job.predict
            job.shape = (model, seq, gbs)
            job.pricer = self
            try:
                job.duration_s = steps * self.iteration_time(job.shape, job.gpus)
            except UsageError as ex:
                raise UsageError(f"workload.trace line {line}: {model} on {job.gpus} GPU(s): {ex}") from None

    def iteration_time(self, shape: tuple, gpus: int, device=None, topology=None) -> float:
        """Seconds per iteration of the training job *shape* ``(model, seq_len,
        global_batch_size)`` on *gpus* GPUs of *device* (a catalog name; default the cluster's)
        wired as *topology* (default the cluster's, ranks on as few nodes as possible), by
        labsim-training under ``workload.predict``; cached per distinct question."""
        hw = self.context.hardware
        where = (None if topology is None else
                 tuple(getattr(topology, f, None) for f in ("nodes", "gpus_per_node", "nodes_per_leaf", "nics_per_node")))
        key = (shape, gpus, device, where)
        if key not in self._iteration_cache:
            spec = self.config.get("predict") or {}
            model, seq, gbs = shape
            r = self._estimate(model, framework=spec.get("framework", "fsdp"), config=dict(spec.get("config") or {}),
                               device=device or hw.device(), topology=topology or hw.topology, seq_len=seq,
                               global_batch_size=gbs, gpus=gpus, check_memory=False)
            total = r["iteration_time_s"]
            membound = r["bottleneck"]["seconds"]["memory bandwidth"] / total if total > 0 else 0.5
            self._iteration_cache[key] = (total, r["memory_per_gpu_gib"]["total"], r["memory_capacity_gib"],
                                          min(1.0, max(0.0, membound)))
        return self._iteration_cache[key][0]

    def membound(self, shape: tuple, gpus: int, device=None) -> float:
        """The share of the job *shape*'s iteration bound by memory bandwidth (labsim-training's
        bottleneck), on *gpus* GPUs of *device*: how it shares a GPU under MPS or MIG."""
        self.iteration_time(shape, gpus, device)
        return self._iteration_cache[(shape, gpus, device, None)][3]

    def memory_gib(self, shape: tuple, gpus: int, device=None) -> tuple[float, float]:
        """``(GiB per GPU the job needs, GiB a GPU of *device* has)`` by labsim-training, for the
        job *shape* on *gpus* GPUs (a job that needs more fails out of memory on that device)."""
        self.iteration_time(shape, gpus, device)
        _, need, have, _ = self._iteration_cache[(shape, gpus, device, None)]
        return need, have

    def _generate(self, gen: dict) -> list[Job]:
        rng = self.context.rng("jobs", "generate")
        n = int(gen["jobs"])
        gaps = rng.exponential(3600.0 / float(gen["rate_per_hour"]), size=n)
        gpus = _draw_weighted(rng, gen.get("num_gpus") or {"1": 0.7, "2": 0.1, "4": 0.1, "8": 0.1}, n,
                              "workload.generate.num_gpus", int)
        dist = self.context.distribution(gen.get("duration_s_dist_config") or
                                         {"type": "LogNormal", "mean": 3600, "sigma": 7200, "min": 60},
                                         "jobs", "duration")
        durations = dist.sample_n(n)
        users = list(gen.get("users") or ["u0", "u1", "u2", "u3"])
        groups = list(gen.get("groups") or [""])
        kinds, replicas, lifetimes = self._draw_kinds(gen, n)
        t = 0.0
        out = []
        served = 0
        for i in range(n):
            t += float(gaps[i])
            job = Job(str(i), int(gpus[i]), max(1.0, float(durations[i])), t, user=users[i % len(users)],
                      group=groups[i % len(groups)])
            if kinds is not None and kinds[i] != TRAINING:
                job.category = kinds[i]
                job.duration_s = 0.0           # a session's length, a service's lifetime: below
                if kinds[i] == INFERENCE:
                    names = list(self.services.specs)
                    if not names:
                        raise UsageError("workload.generate.kinds: inference jobs need workload.services")
                    job.service = names[served % len(names)]
                    served += 1
                    job.replicas = replicas[i]
                    job.gpus = 0
                    if lifetimes is not None:
                        job.duration_s = max(1.0, float(lifetimes.sample_n(1)[0]))
                else:
                    job.gpus = 1
            out.append(job)
        if gen.get("fractional"):
            self._fractions(gen["fractional"], out)
        return out

    def _fractions(self, spec: dict, jobs: list[Job]) -> None:
        """Make the generated one-GPU training jobs and sessions ask for part of their GPU, each
        with the probability ``generate.fractional`` gives its kind (a stream of its own)."""
        rng = self.context.rng("jobs", "fractional")
        share = spec["share"]
        odds = {TRAINING: float(spec.get("training", 0.0)), INTERACTIVE: float(spec.get("interactive", 1.0))}
        draws = rng.random(len(jobs))
        for job, u in zip(jobs, draws):
            if job.gpus == 1 and u < odds.get(job.category, 0.0):
                fraction = float(share.get("gpu_fraction", 0.0))
                job.gpu_fraction = fraction if fraction < 1 else 0.0   # 1: a whole GPU, as in a trace
                job.mps_percentage = float(share.get("mps_percentage", 0.0))
                job.mig_profile = str(share.get("mig_profile", ""))

    def _draw_kinds(self, gen: dict, n: int) -> tuple:
        """``(kinds, replicas, lifetimes)`` of the generated jobs: each job's kind by
        ``generate.kinds`` and its replica count by ``generate.replicas``, from streams of their
        own (a training-only generator draws what it drew before kinds existed), and the
        services' lifetime distribution (None: to the horizon). All None when every job trains."""
        weights = dict(gen.get("kinds") or {TRAINING: 1})
        if not any(v > 0 for k, v in weights.items() if k != TRAINING):
            return None, None, None
        rng = self.context.rng("jobs", "kinds")
        kinds = _draw_weighted(rng, {k: weights[k] for k in (TRAINING, INFERENCE, INTERACTIVE)
                                     if weights.get(k, 0) > 0}, n, "workload.generate.kinds", str)
        replicas = _draw_weighted(rng, gen.get("replicas") or {"1": 1}, n, "workload.generate.replicas", int)
        spec = gen.get("service_duration_s_dist_config")
        lifetimes = self.context.distribution(spec, "jobs", "service_lifetime") if spec else None
        return kinds, replicas, lifetimes

    def start(self, target):
        self.context.env.process(self._arrive(target))

    def _arrive(self, target):
        env = self.context.env
        for job in self.jobs:
            if job.arrival_s > env.now:
                yield env.timeout(job.arrival_s - env.now)
            target.submit(job.fresh())
        target.no_more_jobs()

    def summary(self):
        out = {"jobs": len(self.jobs), "gpu_hours_asked": sum(j.gpus * j.duration_s for j in self.jobs) / 3600}
        by_kind = {}
        for j in self.jobs:
            by_kind[j.category] = by_kind.get(j.category, 0) + 1
        if set(by_kind) != {TRAINING}:
            out["by_kind"] = by_kind
        services = {}
        for name in sorted({j.service for j in self.jobs if j.category == INFERENCE}):
            capacity = self.services.capacity(name)
            services[name] = {"engine": self.services.specs[name]["engine"],
                              "gpus_per_replica": self.services.gpus_per_replica(name),
                              **({"capacity_per_replica": capacity} if capacity else {})}
        if services:
            out["services"] = services
        if self.dropped:
            out["dropped_unpriced"] = self.dropped
        if self.skipped:
            out["skipped"] = dict(sorted(self.skipped.items()))
        return out

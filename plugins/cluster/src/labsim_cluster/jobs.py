"""Cluster jobs and the ``jobs`` workload: a trace, or a generator.

``workload: {type: jobs, trace: builtin:tiresias_60job}`` replays a trace in labsim's normalized
schema (``job_id, submit_time_s, duration_s, num_gpus`` required; ``user, group, job_type,
priority`` optional; other columns ignored); ``trace: path.csv`` reads your own, with
``columns: {num_gpus: gpus, ...}`` mapping other names. A bad row exits 2 naming the row and
the column. ``generate: {...}`` draws jobs instead: Poisson arrivals at ``rate_per_hour``,
``num_gpus`` from weighted choices, durations from a distribution, users round-robin from a
list. Every target framework (a scheduling policy) gets the identical jobs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import labsim
from labsim.errors import UsageError

from labsim_cluster.readers import SCHEMA as READER_SCHEMA
from labsim_cluster.readers import read_gavel, read_helios, read_pai, read_philly, read_pollux, read_tiresias

CLUSTER_JOBS = "cluster jobs"
REQUIRED = ("job_id", "submit_time_s", "duration_s", "num_gpus")
OPTIONAL = ("user", "group", "job_type", "priority", "model", "steps", "seq_len", "global_batch_size", "cpu",
            "mem_gib")
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
    run_overhead_s: float = 0.0      # seconds of the current run that do no work (restore, pull, stalls)
    token: object = None             # the current run's wake-up (stale wake-ups are ignored)

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.duration_s - self.attained_s)

    @property
    def attained_gpu_s(self) -> float:
        return self.attained_s * self.gpus


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
            model = (row.get(name_of["model"]) or "").strip()
            predict = None
            if model and not (row.get(name_of["duration_s"]) or "").strip():
                # a training job whose duration labsim-training predicts: steps × iteration time
                steps = num("steps", int)
                seq = num("seq_len", int) if (row.get(name_of["seq_len"]) or "").strip() else 2048
                gbs = num("global_batch_size", int)
                predict = (model, steps, seq, gbs, row_no)
                submit, duration, gpus = num("submit_time_s"), 1.0, num("num_gpus", int)
            else:
                submit, duration, gpus = num("submit_time_s"), num("duration_s"), num("num_gpus", int)
            if submit < 0 or duration <= 0 or gpus < 1:
                bad = ("submit_time_s" if submit < 0 else "duration_s" if duration <= 0 else "num_gpus")
                raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[bad]}: "
                                 f"{row.get(name_of[bad])!r}; allowed: submit ≥ 0, duration > 0, GPUs ≥ 1")
            prio = (row.get(name_of["priority"]) or "").strip()
            cpu = num("cpu") if (row.get(name_of["cpu"]) or "").strip() else 0.0
            mem = num("mem_gib") if (row.get(name_of["mem_gib"]) or "").strip() else 0.0
            if cpu < 0 or mem < 0:
                bad = "cpu" if cpu < 0 else "mem_gib"
                raise UsageError(f"{label}: {path.name} line {row_no}, column {name_of[bad]}: "
                                 f"{row.get(name_of[bad])!r}; allowed: a number ≥ 0")
            jobs.append(Job(str(row[name_of["job_id"]]).strip(), gpus, duration, submit,
                            user=(row.get(name_of["user"]) or "").strip(),
                            group=(row.get(name_of["group"]) or "").strip(),
                            kind=(row.get(name_of["job_type"]) or "").strip(),
                            priority=int(float(prio)) if prio else 0, cpu=cpu, mem_gib=mem, predict=predict))
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
            },
        },
    },
}


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
        return jobs

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
            self._iteration_cache[key] = (r["iteration_time_s"], r["memory_per_gpu_gib"]["total"],
                                          r["memory_capacity_gib"])
        return self._iteration_cache[key][0]

    def memory_gib(self, shape: tuple, gpus: int, device=None) -> tuple[float, float]:
        """``(GiB per GPU the job needs, GiB a GPU of *device* has)`` by labsim-training, for the
        job *shape* on *gpus* GPUs (a job that needs more fails out of memory on that device)."""
        self.iteration_time(shape, gpus, device)
        _, need, have = self._iteration_cache[(shape, gpus, device, None)]
        return need, have

    def _generate(self, gen: dict) -> list[Job]:
        rng = self.context.rng("jobs", "generate")
        n = int(gen["jobs"])
        gaps = rng.exponential(3600.0 / float(gen["rate_per_hour"]), size=n)
        choices = gen.get("num_gpus") or {"1": 0.7, "2": 0.1, "4": 0.1, "8": 0.1}
        sizes = [int(k) for k in choices]
        weights = [float(v) for v in choices.values()]
        if sum(weights) <= 0:
            raise UsageError("workload.generate.num_gpus: the weights sum to 0")
        gpus = rng.choice(sizes, size=n, p=[w / sum(weights) for w in weights])
        dist = self.context.distribution(gen.get("duration_s_dist_config") or
                                         {"type": "LogNormal", "mean": 3600, "sigma": 7200, "min": 60},
                                         "jobs", "duration")
        durations = dist.sample_n(n)
        users = list(gen.get("users") or ["u0", "u1", "u2", "u3"])
        groups = list(gen.get("groups") or [""])
        t = 0.0
        out = []
        for i in range(n):
            t += float(gaps[i])
            out.append(Job(str(i), int(gpus[i]), max(1.0, float(durations[i])), t, user=users[i % len(users)],
                           group=groups[i % len(groups)]))
        return out

    def start(self, target):
        self.context.env.process(self._arrive(target))

    def _arrive(self, target):
        env = self.context.env
        for job in self.jobs:
            if job.arrival_s > env.now:
                yield env.timeout(job.arrival_s - env.now)
            target.submit(Job(job.job_id, job.gpus, job.duration_s, job.arrival_s, job.user, job.group,
                              job.kind, job.priority, job.cpu, job.mem_gib, shape=job.shape, pricer=job.pricer))
        target.no_more_jobs()

    def summary(self):
        out = {"jobs": len(self.jobs), "gpu_hours_asked": sum(j.gpus * j.duration_s for j in self.jobs) / 3600}
        if self.dropped:
            out["dropped_unpriced"] = self.dropped
        if self.skipped:
            out["skipped"] = dict(sorted(self.skipped.items()))
        return out

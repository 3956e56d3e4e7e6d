"""Minimal plugins of the kinds beyond serving, on the kernel's contracts (kernel tests).

- ``toy_training_job`` (workload) makes one training job; ``toy_trainer`` (framework)
  takes training jobs: each iteration is the model's GEMMs priced by the device,
  run through its GPUs' execution point, then a gradient all-reduce.
- ``toy_jobs`` (workload) makes cluster jobs; ``toy_cluster`` (framework) takes cluster
  jobs and starts them on its GPUs in the order its nested ``scheduler:`` block picks.
- ``toy_fifo`` (scheduler): strict submission order.
- ``toy_time_slicing`` (sharing mode): tenants' work takes turns on the GPU.

Registered exactly as a third-party plugin registers its components.
"""

from __future__ import annotations

import simpy

import labsim
from labsim import hookimpl

TRAINING_JOBS = "training jobs"
CLUSTER_JOBS = "cluster jobs"


class TrainingJob:
    __slots__ = ("hidden", "layers", "tokens", "iterations")

    def __init__(self, hidden, layers, tokens, iterations):
        self.hidden, self.layers, self.tokens, self.iterations = hidden, layers, tokens, iterations


class ToyTrainingJob(labsim.Workload):
    """One training job: a stack of square GEMM layers (kernel-kind tests)."""

    name = "toy_training_job"
    makes = TRAINING_JOBS
    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["iterations"],
        "properties": {
            "type": {"type": "string"},
            "hidden": {"type": "integer", "minimum": 1, "default": 4096},
            "layers": {"type": "integer", "minimum": 1, "default": 4},
            "tokens": {"type": "integer", "minimum": 1, "default": 8192},
            "iterations": {"type": "integer", "minimum": 1},
        },
    }

    def start(self, target):
        c = self.config
        target.submit(TrainingJob(c.get("hidden", 4096), c.get("layers", 4), c.get("tokens", 8192),
                                  c["iterations"]))

    def summary(self):
        return {"iterations": self.config["iterations"]}


class ToyTrainer(labsim.Framework):
    """Data-parallel training of a toy model (kernel-kind tests)."""

    name = "toy_trainer"
    accepts = (TRAINING_JOBS,)
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"gpus": {"type": "integer", "minimum": 1, "default": 1}}}

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.device = context.hardware.device()
        self.gpus = context.hardware.allocate(instance_name, config.get("gpus", 1), why="config.gpus")
        self.iteration_times: list[float] = []

    def start(self):
        pass

    def submit(self, job):
        self.context.env.process(self._train(job))

    def _train(self, job):
        env = self.context.env
        n = len(self.gpus)
        gemm = self.device.gemm_time(job.tokens // n, job.hidden, job.hidden)
        compute = 3 * job.layers * gemm  # forward, and backward's two GEMMs
        grads = 2 * job.layers * job.hidden * job.hidden  # bf16 bytes
        comm = labsim.collective_time("all_reduce", grads, ranks=n, device=self.device) if n > 1 else 0.0
        for _ in range(job.iterations):
            began = env.now
            yield self.gpus.execute(compute)
            if comm:
                yield env.timeout(comm)
            self.context.accounting.add_busy(self.instance_name, compute * n)
            self.iteration_times.append(env.now - began)
        self.context.accounting.release(self.instance_name)
        self.notify_finished(job)

    def summary(self):
        times = self.iteration_times
        return {"iterations": len(times),
                "iteration_time_s": sum(times) / len(times) if times else None}


class ClusterJob:
    __slots__ = ("job_id", "gpus", "duration_s", "arrival_s", "start_s")

    def __init__(self, job_id, gpus, duration_s, arrival_s):
        self.job_id, self.gpus, self.duration_s, self.arrival_s = job_id, gpus, duration_s, arrival_s
        self.start_s = None


class ToyJobs(labsim.Workload):
    """Cluster jobs arriving at once (kernel-kind tests)."""

    name = "toy_jobs"
    makes = CLUSTER_JOBS
    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["jobs"],
        "properties": {
            "type": {"type": "string"},
            "jobs": {"type": "array", "items": {
                "type": "object", "required": ["gpus", "duration_s"], "additionalProperties": False,
                "properties": {"gpus": {"type": "integer", "minimum": 1},
                               "duration_s": {"type": "number", "exclusiveMinimum": 0}}}},
        },
    }

    def start(self, target):
        for i, job in enumerate(self.config["jobs"]):
            target.submit(ClusterJob(i, job["gpus"], job["duration_s"], self.context.env.now))


class ToyCluster(labsim.Framework):
    """A cluster of GPUs whose nested scheduler picks the jobs to start (kernel-kind tests)."""

    name = "toy_cluster"
    accepts = (CLUSTER_JOBS,)
    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["gpus", "scheduler"],
        "properties": {"gpus": {"type": "integer", "minimum": 1},
                       "scheduler": {"$ref": "#/$defs/scheduler"}},
    }

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.gpus = context.hardware.allocate(instance_name, config["gpus"], why="config.gpus")
        block = config["scheduler"]
        self.policy = context.registry.get("schedulers", block["type"])(block, context)
        self.free = config["gpus"]
        self.queue: list[ClusterJob] = []
        self.done: list[ClusterJob] = []

    def start(self):
        pass

    def submit(self, job):
        self.queue.append(job)
        self._dispatch()

    def _dispatch(self):
        env = self.context.env
        for job in self.policy.pick(list(self.queue), self.free, env.now):
            self.queue.remove(job)
            self.free -= job.gpus
            job.start_s = env.now
            env.process(self._run(job))

    def _run(self, job):
        yield self.context.env.timeout(job.duration_s)
        self.free += job.gpus
        self.done.append(job)
        self.context.accounting.add_busy(self.instance_name, job.gpus * job.duration_s)
        self._dispatch()

    def summary(self):
        waits = [j.start_s - j.arrival_s for j in self.done]
        return {"jobs_finished": len(self.done),
                "makespan_s": max((j.start_s + j.duration_s for j in self.done), default=0.0),
                "mean_wait_s": sum(waits) / len(waits) if waits else None}


class ToyFifo(labsim.Scheduler):
    """Strict submission order: the head of the queue blocks the rest (kernel-kind tests)."""

    name = "toy_fifo"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {"type": {}}}

    def pick(self, queue, free_gpus, now):
        started = []
        for job in queue:
            if job.gpus > free_gpus:
                break
            started.append(job)
            free_gpus -= job.gpus
        return started


class ToyTimeSlicing(labsim.SharingMode):
    """Tenants' work takes turns on the GPU, one piece at a time (kernel-kind tests)."""

    name = "toy_time_slicing"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {"type": {}}}

    def __init__(self, config, gpu, context):
        super().__init__(config, gpu, context)
        self.turn = simpy.Resource(context.env, capacity=1)

    def execute(self, tenant, seconds):
        return self.context.env.process(self._run(seconds))

    def _run(self, seconds):
        with self.turn.request() as slot:
            yield slot
            yield self.context.env.timeout(seconds)


@hookimpl
def register_workloads(register):
    register(ToyTrainingJob)
    register(ToyJobs)


@hookimpl
def register_frameworks(register):
    register(ToyTrainer)
    register(ToyCluster)


@hookimpl
def register_schedulers(register):
    register(ToyFifo)


@hookimpl
def register_sharing_modes(register):
    register(ToyTimeSlicing)

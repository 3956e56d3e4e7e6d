"""The training frameworks: Megatron-LM, DeepSpeed ZeRO, PyTorch FSDP and DDP.

Each is a policy over one engine (:mod:`labsim_training.engine`): which parallel degrees it
offers (:meth:`TrainingFramework.layout_options`) and what it shards over the data-parallel
ranks and when its collectives run (:meth:`TrainingFramework.sharding`). Everything else —
pricing, memory, the SimPy timeline, the summary — is shared.
"""

from __future__ import annotations

from dataclasses import replace

import labsim
import simpy
from labsim.errors import UsageError

from labsim_training.job import TRAINING_JOBS, WORKLOAD_SCHEMA, job_from_config
from labsim_training.layout import PRECISIONS, RECOMPUTE, Sharding, make_layout

# The engine, the network and the plan load when a framework first plans or runs a job
# (inside the methods below): every ``labsim`` command registers these classes, and a run
# that trains nothing need not load them.

#: host microseconds per kernel the model counts (about 15 per layer forward, 26 backward) for
#: eager PyTorch training: Python, autograd and launch; a kernel takes at least this long.
#: Fitted (one constant) on the even rows of vTrain's single-node Megatron-LM runs, whose small
#: layers (hidden 1024-2048, micro-batch 1-2) are bound by the host, and checked on the odd rows
#: (benchmarks/fidelity_training.py). Megatron launches ~60 kernels per layer forward+backward
#: (views, copies, bias and rng-tracker ops the model does not price), so this is ~55 us per
#: real launch. In large layers it only lifts short element-wise kernels.
HOST_KERNEL_US = 85.0

#: alone-seconds of iterations a one-GPU tenant of a shared GPU runs as one piece of work
BATCH_ALONE_S = 60.0

COMMON = {
    "micro_batch_size": {"type": "integer", "minimum": 1, "default": 1,
                         "description": "Sequences per micro-batch on each data-parallel rank."},
    "data_parallel": {"type": "integer", "minimum": 1,
                      "description": "Data-parallel ranks (default: the hardware's GPUs / (TP × PP))."},
    "recompute": {"enum": list(RECOMPUTE), "default": "none",
                  "description": "Activation recomputation: none, selective (attention core), full."},
    "precision": {"enum": list(PRECISIONS), "default": "bf16",
                  "description": "Compute precision of the GEMMs (fp8 where the GPU has it)."},
    "attention": {"enum": ["flash", "unfused"], "default": "flash",
                  "description": "Flash attention, or the unfused QKᵀ / softmax / dropout / AV path "
                                 "(Megatron-LM before flash attention) that stores the scores."},
    "straggler": {
        "type": "object", "additionalProperties": False, "required": ["slowdown"],
        "description": "One slow GPU (thermal throttling, a bad part): its pipeline stage's kernels take "
                       "`slowdown` times as long; every replica waits for it at the gradient reduction.",
        "properties": {"stage": {"type": "integer", "minimum": 0, "default": 0},
                       "slowdown": {"type": "number", "minimum": 1}}},
    "job": {"type": "object", "additionalProperties": False, "required": ["model", "global_batch_size"],
            "properties": {k: v for k, v in WORKLOAD_SCHEMA["properties"].items() if k != "type"},
            "description": "The framework's own training job (model, seq_len, global_batch_size, "
                           "iterations), run from the start instead of the experiment's workload: "
                           "a training tenant beside serving tenants on a shared GPU. Set "
                           "is_target_for_workload: false."},
    "record_timeline": {"type": "boolean", "default": False,
                        "description": "Write the first iteration of each pipeline stage's first rank "
                                       "(TP 0, DP 0) to the timeline table (timeline.csv) for plots: "
                                       "one row per kernel stretch, collective, wait and optimizer "
                                       "step, on its compute or comm stream."},
    "host_overhead_per_kernel_us": {
        "type": "number", "minimum": 0, "default": HOST_KERNEL_US,
        "description": "Host (CPU) microseconds an eager framework spends per kernel it launches "
                       "(Python, autograd, dispatch); a layer takes at least its launches."},
}

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["iteration_time_s", "tokens_per_s", "mfu", "memory_per_gpu_gib", "time_breakdown_s"],
    "properties": {
        "iteration_time_s": {"type": "number", "description": "Mean seconds per iteration."},
        "iteration_times_s": {"type": "array", "items": {"type": "number"},
                              "description": "Each iteration's seconds (the first 1,000)."},
        "tokens_per_s": {"type": "number"},
        "samples_per_s": {"type": "number"},
        "model_tflops_per_gpu": {"type": "number", "description": "Model FLOPs (no recompute) per GPU."},
        "hardware_tflops_per_gpu": {"type": "number", "description": "FLOPs done, recompute included."},
        "mfu": {"type": ["number", "null"], "description": "Model FLOPs utilisation."},
        "memory_per_gpu_gib": {"type": "object", "properties": {
            k: {"type": "number"} for k in ("weights", "gradients", "optimizer", "activations",
                                             "buffers", "total")}},
        "time_breakdown_s": {"type": "object", "properties": {
            "compute": {"type": "number"},
            "exposed_communication": {"type": "object", "properties": {
                k: {"type": "number"} for k in ("tp", "pp", "dp", "cp", "ep")}},
            "pipeline_bubble": {"type": "number"},
            "optimizer": {"type": "number"}}},
        "bottleneck": {"type": "object", "properties": {
            "kind": {"enum": ["compute", "memory bandwidth", "network", "pipeline bubble"]},
            "recommendations": {"type": "array", "items": {"type": "string"}}}},
        "cost": {"type": "object"},
    },
}

#: columns of the opt-in ``timeline`` table (``kind``: :data:`labsim_training.engine.TIMELINE_KINDS`)
TIMELINE_COLUMNS = ["framework", "iteration", "rank", "stage", "stream", "kind", "micro_batch", "start_s",
                    "end_s"]

HEADLINE = [
    ("iteration time (s)", "iteration_time_s"),
    ("tokens/s", "tokens_per_s"),
    ("model TFLOP/s per GPU", "model_tflops_per_gpu"),
    ("MFU", "mfu"),
    ("memory per GPU (GiB)", "memory_per_gpu_gib.total"),
    ("exposed comm DP (s)", "time_breakdown_s.exposed_communication.dp"),
    ("pipeline bubble (s)", "time_breakdown_s.pipeline_bubble"),
    ("USD per billion tokens", "cost.usd_per_billion_tokens"),
]


def node_sharding(sharding: Sharding, layout, topology) -> Sharding:
    """*sharding* with a shard group of "a node" resolved: the DP ranks of one node."""
    if sharding.shard_group != -1:
        return sharding
    per_node = int(getattr(topology, "gpus_per_node", 0) or 8)
    return replace(sharding, shard_group=max(1, per_node // layout.tp))


def execution_options(config: dict) -> dict:
    """How kernels run: the attention path, the host's launch cost, a straggler."""
    slow = config.get("straggler") or {}
    return {"attention": config.get("attention", "flash"),
            "host_kernel_s": config.get("host_overhead_per_kernel_us", HOST_KERNEL_US) * 1e-6,
            "straggler": (int(slow.get("stage", 0)), float(slow["slowdown"])) if slow else None}


def _schema(own: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": {**COMMON, **own}}


class TrainingFramework(labsim.Framework):
    """Shared shell of the training frameworks: plans the job when built, simulates it when
    submitted, reports the summary (subclasses say what they shard)."""

    accepts = (TRAINING_JOBS,)
    summary_schema = SUMMARY_SCHEMA
    headline = HEADLINE

    # -- policy (subclasses) --------------------------------------------------------------------

    def layout_options(self, config: dict) -> dict:
        """Keyword arguments of :func:`~labsim_training.layout.make_layout` from *config*."""
        return {}

    def sharding(self, config: dict, precision: str) -> Sharding:
        raise NotImplementedError(self)

    # -- planning -------------------------------------------------------------------------------

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        self.device = context.hardware.device(owner=instance_name)
        self.topology = context.hardware.topology
        self.plan = None
        self.iterations: list[float] = []
        self.result = None
        self.own_job = None
        workload = (context.config or {}).get("workload") or {}
        if config.get("job"):
            self.own_job = job_from_config(config["job"], context)
            self.plan = self._plan(self.own_job)
        elif workload.get("type") == "training":
            self.plan = self._plan(job_from_config(workload, context))

    def _plan(self, job):
        from labsim_training.plan import make_plan

        cfg = self.config
        precision = cfg.get("precision", "bf16")
        layout = make_layout(
            job.model, job, dp=cfg.get("data_parallel"), micro_batch=cfg.get("micro_batch_size", 1),
            recompute=cfg.get("recompute", "none"), precision=precision,
            gpus=self.context.hardware.capacity, **execution_options(cfg), **self.layout_options(cfg))
        self.gpus = self.context.hardware.allocate(
            self.instance_name, layout.world,
            why=f"tensor_parallel {layout.tp} × pipeline_parallel {layout.pp} × data_parallel {layout.dp}"
                + (f" × context_parallel {layout.cp}" if layout.cp > 1 else ""))
        plan = make_plan(self.name, job, layout, node_sharding(self.sharding(cfg, precision), layout,
                                                               self.topology),
                         self.device, self.topology, self.context.registry)
        self.context.hardware.claim_memory(self.instance_name, plan.memory.total)
        return plan

    def start(self):
        if self.own_job is not None:
            if getattr(self, "is_target", False):
                raise UsageError(f"frameworks_to_test {self.instance_name!r}: config.job gives it its own "
                                 "job; set is_target_for_workload: false (or drop config.job)")
            self.submit(self.own_job)

    def submit(self, job):
        if self.plan is None:
            self.plan = self._plan(job)
        self.context.env.process(self._train(job))

    def _iteration(self, env, execute=None, record: bool = False):
        """One iteration of the plan's job in *env*, its work run by *execute* (default: on GPUs
        of its own), over the network links its collectives share."""
        from labsim_training.engine import Iteration
        from labsim_training.network import shared_links

        plan = self.plan
        return Iteration(env, plan.costs, plan.layout, plan.sharding, execute, record=record,
                         links=shared_links(env, plan.costs))

    def _alone_iteration(self) -> tuple[float, float]:
        """(seconds, memory-bound share) of one iteration on GPUs of its own."""
        env = simpy.Environment()
        it = self._iteration(env)
        proc = env.process(it.run())
        env.run(until=proc)
        result = proc.value
        stage = result.stages[result.critical_stage]
        return result.seconds, (stage.membound / result.seconds if result.seconds > 0 else 0.5)

    def _train(self, job):
        env, plan = self.context.env, self.plan
        lay = plan.layout
        # a one-GPU tenant of a shared GPU repeats the same stream of kernels: after the first
        # iteration, up to a minute of iterations run as one piece of work at their average
        # memory-bound share (exact under time-slicing and MIG; MPS sees the average intensity)
        batched = not self.gpus.exclusive and lay.world == 1
        alone = self._alone_iteration() if batched else None
        i = 0
        while i < job.iterations:
            began = env.now
            n = 1
            if batched and i > 0:
                n = min(job.iterations - i, max(1, int(BATCH_ALONE_S / alone[0]) if alone[0] > 0 else 1))
                yield self.gpus.execute(alone[0] * n, membound=alone[1])
            elif i == 0 or not self.gpus.is_alone():
                record = i == 0 and bool(self.config.get("record_timeline", False))
                it = self._iteration(env, self.gpus.execute, record=record)
                result = yield env.process(it.run())
                if self.result is None:
                    self.result = result
                if record:
                    self._write_timeline(result)
            else:  # identical work on GPUs nobody else uses: the same iteration again
                yield self.gpus.execute(self.iterations[0])
            if n == 1:
                self.iterations.append(env.now - began)
            else:
                self.iterations.extend([(env.now - began) / n] * n)
            busy = sum(a.compute + a.tp + a.optimizer for a in self.result.stages)
            self.context.accounting.add_busy(self.instance_name,
                                             n * busy * plan.layout.tp * plan.layout.cp * plan.layout.dp)
            i += n
        self.context.accounting.release(self.instance_name)
        self.notify_finished(job)

    def _write_timeline(self, result):
        lay = self.plan.layout
        table = self.context.metrics.table("timeline", TIMELINE_COLUMNS)
        table.extend([(self.instance_name, 0, lay.rank(0, 0, stage), stage, stream, kind, mb, start, end)
                      for stage, stream, kind, mb, start, end in result.rows])

    def summary(self):
        from labsim_training.plan import report

        if not self.iterations:
            return {"iterations": 0}
        return report(self.plan, self.iterations, self.result, self.context.accounting,
                      self.instance_name)


class Megatron(TrainingFramework):
    """Megatron-LM: tensor, sequence, pipeline (1F1B, interleaved) and data parallelism."""

    name = "megatron"
    aliases = ("megatron-lm",)
    config_schema = _schema({
        "tensor_parallel": {"type": "integer", "minimum": 1, "default": 1},
        "pipeline_parallel": {"type": "integer", "minimum": 1, "default": 1},
        "context_parallel": {"type": "integer", "minimum": 1, "default": 1,
                             "description": "Split each sequence over this many GPUs (ring attention)."},
        "pipeline_schedule": {"enum": ["1f1b", "gpipe"], "default": "1f1b",
                              "description": "1F1B (interleaved with virtual stages), or GPipe: all "
                                             "forwards, then all backwards."},
        "expert_parallel": {"type": "integer", "minimum": 1, "default": 1,
                            "description": "Split each MoE layer's experts over this many "
                                           "data-parallel ranks; tokens reach their experts by "
                                           "all-to-all."},
        "virtual_pipeline_stages": {"type": "integer", "minimum": 1, "default": 1,
                                    "description": "Model chunks per pipeline stage (interleaved 1F1B)."},
        "sequence_parallel": {"type": "boolean", "default": False},
        "distributed_optimizer": {"type": "boolean", "default": False,
                                  "description": "Shard optimizer states over data-parallel ranks."},
        "overlap_grad_reduce": {"type": "boolean", "default": False},
        "overlap_param_gather": {"type": "boolean", "default": False},
        "decoder_first_pipeline_num_layers": {
            "type": "integer", "minimum": 0,
            "description": "Layers of the first (virtual) pipeline stage; the rest split evenly. 0: "
                           "only the embedding."},
        "decoder_last_pipeline_num_layers": {
            "type": "integer", "minimum": 0,
            "description": "Layers of the last (virtual) pipeline stage. 0: only the LM head and loss."},
    })

    def layout_options(self, config):
        return {"tp": config.get("tensor_parallel", 1), "pp": config.get("pipeline_parallel", 1),
                "cp": config.get("context_parallel", 1),
                "ep": config.get("expert_parallel", 1),
                "vpp": config.get("virtual_pipeline_stages", 1),
                "schedule": config.get("pipeline_schedule", "1f1b"),
                "sp": config.get("sequence_parallel", False),
                "first_stage_layers": config.get("decoder_first_pipeline_num_layers"),
                "last_stage_layers": config.get("decoder_last_pipeline_num_layers")}

    def sharding(self, config, precision):
        # bf16 (and fp8, whose weights are bf16) accumulates and reduces gradients in fp32
        grad = 4.0 if precision in ("bf16", "fp8") else 2.0
        dist = bool(config.get("distributed_optimizer", False))
        # Megatron's optimizer keeps fp32 master weights, Adam's moments and, when gradients are
        # 16-bit, an fp32 copy of them: 20 / 18 bytes per parameter with fp16 / bf16 in all
        return Sharding(optimizer=dist, overlap_grad_reduce=bool(config.get("overlap_grad_reduce", False)),
                        grad_bytes=grad, grad_comm_bytes=grad, gather_after_step=dist,
                        optimizer_bytes=12.0 if grad == 4.0 else 16.0,
                        overlap_param_gather=bool(config.get("overlap_param_gather", False)))


class DeepSpeed(TrainingFramework):
    """DeepSpeed ZeRO stages 0–3: optimizer states, gradients and weights sharded over data parallel."""

    name = "deepspeed"
    config_schema = _schema({
        "zero_stage": {"enum": [0, 1, 2, 3], "default": 0},
        "overlap_comm": {"type": "boolean", "default": True,
                         "description": "Reduce gradients during backward (and prefetch ZeRO-3 weights)."},
        "reduce_bucket_size": {"type": "integer", "minimum": 1, "default": 500_000_000,
                               "description": "Elements per gradient bucket (its buffer)."},
        "offload_optimizer": {"type": "boolean", "default": False,
                              "description": "ZeRO-Offload: optimizer states in host memory, Adam on the CPU."},
        "offload_param": {"type": "boolean", "default": False,
                          "description": "ZeRO-Infinity (zero_stage 3 only): the 16-bit weight shards in host "
                                         "memory, copied to the GPU before each layer's all-gather."},
        "host_memory_gbps": {
            "type": "number", "exclusiveMinimum": 0, "default": 409.6,
            "description": "Host memory bandwidth per node, shared by its GPUs' CPU Adam (default: "
                           "two sockets of 8 DDR4-3200 channels, a DGX A100's)."},
    })

    def sharding(self, config, precision):
        stage = int(config.get("zero_stage", 0))
        bucket = 2.0 * config.get("reduce_bucket_size", 500_000_000) if stage else 0.0
        host_bw = 0.0
        if config.get("offload_optimizer", False):
            per_node = int(getattr(getattr(self, "topology", None), "gpus_per_node", 0) or 8)
            host_bw = float(config.get("host_memory_gbps", 409.6)) * 1e9 / per_node
        offload_params = bool(config.get("offload_param", False))
        if offload_params and stage != 3:
            raise UsageError(f"offload_param: true needs zero_stage: 3 (weights partitioned); got zero_stage: "
                             f"{stage}; allowed: zero_stage 3, or offload_param: false")
        return Sharding(params=stage >= 3, grads=stage >= 2, optimizer=stage >= 1, offload_params=offload_params,
                        every_microbatch=stage >= 2,
                        overlap_grad_reduce=bool(config.get("overlap_comm", True)),
                        grad_bytes=2.0, grad_comm_bytes=2.0, gather_after_step=stage in (1, 2),
                        bucket_bytes=bucket, offload_host_bw=host_bw)


class FSDP(TrainingFramework):
    """PyTorch FSDP: full_shard (weights, gradients, optimizer), shard_grad_op or no_shard."""

    name = "fsdp"
    config_schema = _schema({
        "sharding": {"enum": ["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"],
                     "default": "full_shard",
                     "description": "hybrid_shard: full_shard inside each node, replicated across nodes."},
    })

    def sharding(self, config, precision):
        mode = config.get("sharding", "full_shard")
        shard = mode != "no_shard"
        return Sharding(params=mode in ("full_shard", "hybrid_shard"), grads=shard, optimizer=shard,
                        every_microbatch=shard, overlap_grad_reduce=True, grad_bytes=2.0, grad_comm_bytes=2.0,
                        gather_after_step=mode == "shard_grad_op",
                        shard_group=-1 if mode == "hybrid_shard" else 0)


class DDP(TrainingFramework):
    """PyTorch DistributedDataParallel: replicated model, gradients all-reduced in buckets."""

    name = "ddp"
    config_schema = _schema({
        "bucket_cap_mb": {"type": "number", "exclusiveMinimum": 0, "default": 25},
        "overlap": {"type": "boolean", "default": True,
                    "description": "All-reduce gradient buckets while backward runs."},
    })

    def sharding(self, config, precision):
        return Sharding(overlap_grad_reduce=bool(config.get("overlap", True)), grad_bytes=4.0,
                        grad_comm_bytes=4.0, bucket_bytes=2 * config.get("bucket_cap_mb", 25) * 2**20)


FRAMEWORKS = (Megatron, DeepSpeed, FSDP, DDP)


def framework_class(name: str):
    for cls in FRAMEWORKS:
        if name.lower() == cls.name or name.lower() in cls.aliases:
            return cls
    raise UsageError(f"no training framework {name!r}; available: "
                     f"{', '.join(c.name for c in FRAMEWORKS)}")

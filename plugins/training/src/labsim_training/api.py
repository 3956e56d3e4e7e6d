"""A Python API other plugins reuse: a job's predicted iteration time and memory.

>>> from labsim_training import estimate
>>> r = estimate("GPT-3-175B", framework="megatron", device="A100-SXM4-80GB",
...              topology={"type": "dgx-a100", "nodes": 48}, seq_len=2048, global_batch_size=1536,
...              config={"tensor_parallel": 8, "pipeline_parallel": 12, "recompute": "full",
...                      "precision": "fp16"})                       # doctest: +SKIP
>>> r["iteration_time_s"], r["memory_per_gpu_gib"]["total"]          # doctest: +SKIP

The cluster plugins derive job durations from it; it runs the same engine as ``labsim run``
(one iteration, no accounting) in a private SimPy environment.
"""

from __future__ import annotations

import labsim
import simpy

from labsim_training.engine import Iteration
from labsim_training.frameworks import execution_options, framework_class, node_sharding
from labsim_training.job import TrainingJob, resolve_model
from labsim_training.layout import make_layout
from labsim_training.network import shared_links
from labsim_training.plan import make_plan, report


def _topology(topology, device):
    if topology is None:
        return None
    if isinstance(topology, str):
        topo = labsim.topology(topology)
    elif isinstance(topology, dict):
        spec = dict(topology)
        topo = labsim.topology(spec.pop("type"))
        if spec:
            topo = topo.customize(spec)
    else:
        topo = topology
    return topo.with_device(device) if device is not None else topo


def estimate(model, *, framework: str = "megatron", config: dict | None = None, device="A100-SXM4-80GB",
             topology=None, seq_len: int, global_batch_size: int, gpus: int | None = None,
             check_memory: bool = True, record: bool = False, contention: bool = True) -> dict:
    """The summary of one iteration of *model* (an id, a mapping, or a ModelSpec) trained by
    *framework* with *config* on *gpus* GPUs of *device* wired as *topology* (default: as many
    GPUs as the layout needs, on the device's usual servers).

    *contention*: data-parallel collectives and pipeline hand-offs share the topology's links
    (False: each priced alone).

    :raises labsim.UsageError: an impossible layout or a job that does not fit in memory.
    """
    config = dict(config or {})
    dev = labsim.device(device) if isinstance(device, str) else device
    topo = _topology(topology, dev)
    spec = model if hasattr(model, "layer_gemms") else resolve_model(None, model)
    job = TrainingJob(spec, int(seq_len), int(global_batch_size), 1)
    cls = framework_class(framework)
    policy = cls.__new__(cls)
    capacity = gpus if gpus is not None else (getattr(topo, "world_size", None) if topo else None)
    layout = make_layout(spec, job, dp=config.get("data_parallel"), micro_batch=config.get("micro_batch_size", 1),
                         recompute=config.get("recompute", "none"), precision=config.get("precision", "bf16"),
                         gpus=capacity, **execution_options(config), **policy.layout_options(config))
    sharding = node_sharding(policy.sharding(config, layout.precision), layout, topo)
    plan = make_plan(cls.name, job, layout, sharding, dev, topo,
                     check_memory=check_memory)
    env = simpy.Environment()
    it = Iteration(env, plan.costs, plan.layout, plan.sharding, record=record,
                   links=shared_links(env, plan.costs) if contention else None)
    proc = env.process(it.run())
    env.run(until=proc)
    out = report(plan, [proc.value.seconds], proc.value)
    if record:
        out["timeline"] = proc.value.rows
    return out

"""An interactive notebook as a tenant: bursts of GPU work (cells) separated by think time.

A data scientist runs a few cells, reads the output, edits, runs again: the GPU is busy in
bursts and idle in between. Each cell is one step of a model — a forward pass (inference, an
evaluation) or a training step (fine-tuning) of ``batch_size`` samples — priced by the device
cost model through labsim-training's planner on the tenant's device (its MIG instance under
MIG), so a cell on a shared GPU takes what its sharing mode gives it. A burst is
``cells_per_burst_dist_config`` cells run back to back; between bursts the user thinks for
``think_time_dist_config`` seconds. The notebook holds its model's memory for the session.

Its summary: cells run, each cell's latency (P50/P95/P99, ms) against the same cell alone on
the GPU, the share of cells within ``cell_slo_ms``, and the share of the session the notebook
kept the GPU busy.
"""

from __future__ import annotations

import numpy as np

import labsim
from labsim.errors import UsageError

DIST = {"$ref": "#/$defs/distribution"}


def price_cell(model, device, cfg: dict, gpus: int = 1) -> tuple[float, float, float]:
    """``(seconds, memory-bound share, bytes per GPU)`` of one cell of a notebook with settings
    *cfg* (``cell``, ``batch_size``, ``seq_len``, ``precision``) on *model* (a ModelSpec) on
    *gpus* GPUs of *device*, priced by labsim-training's planner (data parallel over *gpus*,
    ``batch_size`` samples per GPU); a UsageError when it does not fit in memory."""
    from labsim_training import estimate

    cnn = getattr(model, "architecture", "") == "cnn"
    seq = 1 if cnn else int(cfg.get("seq_len", 512))
    batch = int(cfg.get("batch_size", 8))
    step = estimate(model, framework="ddp", device=device, seq_len=seq, global_batch_size=batch * gpus,
                    gpus=gpus if gpus > 1 else None,
                    config={"micro_batch_size": batch, "precision": cfg.get("precision", "bf16")},
                    record=False, check_memory=cfg.get("cell", "training_step") == "training_step")
    shares = step["bottleneck"]["seconds"]
    total = step["iteration_time_s"]
    membound = shares["memory bandwidth"] / total if total > 0 else 0.5
    if cfg.get("cell", "training_step") == "forward":
        # a forward pass is the forward third of a step's model FLOPs (backward does twice
        # the forward's matrix work) and none of its optimizer step
        total = (total - step["time_breakdown_s"]["optimizer"]) / 3.0
    mem = step["memory_per_gpu_gib"]
    if cfg.get("cell", "training_step") == "forward":
        # no gradients or optimizer states, and a forward keeps one layer's activations
        layers = max(1, int(getattr(model, "num_layers", 0) or 1))
        memory = (mem["weights"] + mem["buffers"] + mem["activations"] / layers) * 2**30
    else:
        memory = mem["total"] * 2**30
    capacity = float(getattr(device, "memory_bytes", 0) or 0)
    if capacity and memory > capacity:
        raise UsageError(f"a forward pass of batch_size {batch} needs {memory / 2**30:.1f} GiB of "
                         f"{capacity / 2**30:.0f} on {device.name}; use a smaller batch_size")
    return float(total), float(min(1.0, max(0.0, membound))), float(memory)


class Notebook(labsim.Framework):
    """An interactive notebook: bursts of cells (forward passes or training steps) between
    think times."""

    name = "notebook"
    accepts = ()
    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["model"],
        "properties": {
            "model": {"type": "string", "description": "The model the notebook works on (`labsim list models`)."},
            "cell": {"enum": ["forward", "training_step"], "default": "training_step",
                     "description": "What one cell runs on the GPU."},
            "batch_size": {"type": "integer", "minimum": 1, "default": 8},
            "seq_len": {"type": "integer", "minimum": 1, "default": 512,
                        "description": "Tokens per sample (transformers; ignored for CNNs)."},
            "precision": {"enum": ["fp32", "fp16", "bf16"], "default": "bf16"},
            "cells_per_burst_dist_config": {**DIST, "default": {"type": "Constant", "value": 5},
                                            "description": "Cells run back to back in a burst."},
            "think_time_dist_config": {**DIST, "default": {"type": "Exponential", "mean": 30.0},
                                       "description": "Seconds the user thinks between bursts."},
            "session_s": {"type": "number", "exclusiveMinimum": 0,
                          "description": "How long the session lasts (default: the run's "
                                         "simulation.max_simulation_time)."},
            "cell_slo_ms": {"type": "number", "exclusiveMinimum": 0,
                            "description": "A cell answered within this is on time."},
        },
    }
    headline = (
        ("cells", "cells"),
        ("cell latency p50 (ms)", "cell_latency_ms.p50"),
        ("cell latency p99 (ms)", "cell_latency_ms.p99"),
        ("cell alone (ms)", "cell_alone_ms"),
        ("GPU busy share", "busy_share"),
    )

    def __init__(self, instance_name, config, context):
        super().__init__(instance_name, config, context)
        from labsim_training.job import resolve_model

        cfg = self.config
        self.device = context.hardware.device(owner=instance_name)
        try:
            self.cell_s, self.membound, self.memory = price_cell(resolve_model(context, cfg["model"]), self.device,
                                                                 cfg)
        except UsageError as ex:
            raise UsageError(f"{instance_name}: {ex}") from None
        self.gpus = context.hardware.allocate(instance_name, 1, device=self.device)
        context.hardware.claim_memory(instance_name, self.memory)
        self.cells = context.distribution(cfg.get("cells_per_burst_dist_config",
                                                  {"type": "Constant", "value": 5}), instance_name, "cells")
        self.think = context.distribution(cfg.get("think_time_dist_config",
                                                  {"type": "Exponential", "mean": 30.0}), instance_name, "think")
        self.latencies: list[float] = []
        self.busy_s = 0.0

    def start(self):
        self.context.env.process(self._session())

    def _session(self):
        env = self.context.env
        end = float(self.config.get("session_s") or
                    (self.context.config or {}).get("simulation", {}).get("max_simulation_time", 3600))
        while True:
            think = float(self.think.sample_n(1)[0])
            if env.now + think >= end:
                break
            yield env.timeout(max(0.0, think))
            for _ in range(max(1, int(round(float(self.cells.sample_n(1)[0]))))):
                began = env.now
                yield self.gpus.execute(self.cell_s, membound=self.membound)
                self.latencies.append(env.now - began)
                self.busy_s += env.now - began
                self.context.accounting.add_busy(self.instance_name, self.cell_s)
        self.context.accounting.release(self.instance_name)

    def summary(self):
        lat = np.asarray(self.latencies) * 1e3
        out = {"type": self.name, "cells": int(lat.size), "cell_alone_ms": self.cell_s * 1e3,
               "cell_memory_bound_share": self.membound,
               "memory_gib": self.memory / 2**30,
               "busy_share": self.busy_s / self.context.env.now if self.context.env.now > 0 else 0.0}
        if lat.size:
            out["cell_latency_ms"] = {"mean": float(lat.mean()),
                                      **{f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}}
            out["slowdown"] = float(lat.mean() / (self.cell_s * 1e3)) if self.cell_s > 0 else None
            slo = self.config.get("cell_slo_ms")
            if slo:
                out["cell_slo_attainment"] = float((lat <= slo).mean())
        return out

"""Job kinds besides training: inference services and interactive sessions.

A cluster job is one of three kinds (the trace's ``job_type`` column: ``inference`` or
``interactive``; any other value, or none, is a training job and stays its job type for the
throughput table):

- **training**: runs until its work (``duration_s``, or what labsim-training predicts) is done;
  its GPUs are busy all along. The only kind with a job completion time.
- **inference**: a long-running service of ``replicas`` model replicas, each on the GPUs its
  serving engine needs, holding them for its lifetime (``duration_s``; without one, from its
  submission to the trace's horizon). What a replica needs and delivers comes from the serving
  engines (labsim-vllm, labsim-trtllm) named in ``workload.services`` (a row may name a model
  instead: that model on vLLM with its defaults): GPUs per replica are the engine's
  ``tensor_parallel_size × pipeline_parallel_size``, or the fewest (1, 2, 4, … up to a node,
  then pipeline stages of a node each) on which the engine's own memory planning holds the
  model on the cluster's GPU; with ``traffic`` and ``slo`` given, a replica's capacity
  (requests/s within the SLOs, and output tokens/s there) is what ``labsim search`` finds for it
  (``labsim_llm.search.search_one``: the engine simulated on that traffic, the load doubled then
  bisected).
- **interactive**: a notebook session holding its GPUs for its length, busy only while it runs
  cells: bursts of ``cells_per_burst_dist_config`` cells (a forward pass or a training step of
  ``model``, priced by labsim-training on the cluster's GPU as labsim-sharing's ``notebook``
  tenant prices them: :func:`labsim_sharing.notebook.price_cell`) after think times of
  ``think_time_dist_config`` seconds. Its busy share (cell seconds over the session) is what the
  cluster counts as busy of the GPU-time it holds.

Services and sessions are not preempted by the preemptive policies (a running one keeps its
GPUs) and lose nothing when a failure ends their run: they start again where they were.
"""

from __future__ import annotations

import math
import re

from labsim.errors import LabsimError, UsageError

TRAINING, INFERENCE, INTERACTIVE = "training", "inference", "interactive"
KINDS = (TRAINING, INFERENCE, INTERACTIVE)

DIST = {"$ref": "#/$defs/distribution"}

SERVICES_SCHEMA = {
    "type": "object",
    "description": "Inference services by name (a trace row's service column, or the generator's "
                   "inference jobs in turn): the serving engine and model each replica runs.",
    "additionalProperties": {
        "type": "object", "additionalProperties": False, "required": ["engine", "config"],
        "properties": {
            "engine": {"type": "string", "description": "A serving framework type: vllm or trtllm."},
            "config": {"type": "object",
                       "description": "The engine's config (model, tensor_parallel_size, ...). Without "
                                      "tensor_parallel_size a replica gets the fewest GPUs (1, 2, 4, ... up "
                                      "to a node) on which the engine's memory planning holds the model."},
            "traffic": {"type": "object",
                        "description": "One client profile of labsim's client_profiles workload "
                                       "(request_rate, prompt_tokens_dist_config, "
                                       "max_output_tokens_dist_config, ...): the traffic a replica's "
                                       "capacity is searched on, from request_rate up or down."},
            "slo": {"type": "array", "minItems": 1, "items": {"type": "string"},
                    "description": "SLOs on the engine's summary (ttft_ms.p99<=1000): with traffic, a "
                                   "replica's capacity is the highest load within them, as labsim "
                                   "search finds it."},
            "traffic_duration_s": {"type": "number", "exclusiveMinimum": 0, "default": 60.0,
                                   "description": "Seconds of traffic each capacity run simulates."},
        },
    },
}

INTERACTIVE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["model"],
    "description": "How interactive sessions use their GPUs: labsim-sharing's notebook settings.",
    "properties": {
        "model": {"type": "string", "description": "The model the notebooks work on (`labsim list models`)."},
        "cell": {"enum": ["forward", "training_step"], "default": "training_step",
                 "description": "What one cell runs on the GPU."},
        "batch_size": {"type": "integer", "minimum": 1, "default": 8, "description": "Samples per GPU."},
        "seq_len": {"type": "integer", "minimum": 1, "default": 512},
        "precision": {"enum": ["fp32", "fp16", "bf16"], "default": "bf16"},
        "cells_per_burst_dist_config": {**DIST, "default": {"type": "Constant", "value": 5},
                                        "description": "Cells run back to back in a burst."},
        "think_time_dist_config": {**DIST, "default": {"type": "Exponential", "mean": 30.0},
                                   "description": "Seconds the user thinks between bursts."},
        "session_s_dist_config": {**DIST, "default": {"type": "Constant", "value": 7200},
                                  "description": "Session length (s) of a session without duration_s."},
    },
}


def kind_of(job_type: str) -> str:
    """The job kind a trace's ``job_type`` value names."""
    return job_type if job_type in (INFERENCE, INTERACTIVE) else TRAINING


class Services:
    """The inference services of ``workload.services``: GPUs per replica and, where traffic and
    SLOs are given, a replica's capacity; each found once, on the cluster's GPU."""

    def __init__(self, specs: dict, context, per_node: int, world: int):
        self.specs = dict(specs or {})
        self.context = context
        self.per_node = per_node
        self.world = world
        self._gpus: dict[str, int] = {}
        self._capacity: dict[str, dict | None] = {}

    def check(self, name: str, where: str) -> dict:
        """The service *name*: one of ``workload.services``, or a model (``labsim list models``)
        served by vLLM with its defaults."""
        if name not in self.specs:
            model = None
            try:
                from labsim_llm.models import resolve_model

                model = resolve_model(self.context, name)
            except (ImportError, LabsimError):
                pass
            if model is None:
                have = ", ".join(sorted(self.specs)) or "none (add workload.services)"
                raise UsageError(f"{where}: service {name!r} is not in workload.services nor a model; "
                                 f"services: {have}")
            self.specs[name] = {"engine": "vllm", "config": {"model": name}}
        return self.specs[name]

    def _experiment(self, name: str, config: dict, traffic: dict | None = None) -> dict:
        spec = self.specs[name]
        hw = self.context.hardware
        seed = int(((self.context.config or {}).get("simulation") or {}).get("random_seed", 0) or 0)
        # building the engine needs a workload it accepts; the check runs none of it
        profile = {"profile_name": name, "request_rate": 1.0,
                   "prompt_tokens_dist_config": {"type": "Constant", "value": 1},
                   "max_output_tokens_dist_config": {"type": "Constant", "value": 1}, **(traffic or {})}
        return {
            "name": f"service-{name}",
            "simulation": {"random_seed": seed},
            "hardware_profile": {"device": hw.device().name},
            "workload": {"type": "client_profiles",
                         "total_duration": float(spec.get("traffic_duration_s", 60.0)),
                         "client_profiles": [profile]},
            "frameworks_to_test": [{"name": name, "type": spec["engine"], "config": config}],
            "metrics_config": {"percentiles_to_calculate": [0.5, 0.9, 0.95, 0.99]},
        }

    def gpus_per_replica(self, name: str) -> int:
        """The engine's TP × PP, or the fewest GPUs on which its memory planning holds the model
        on the cluster's GPU: tensor parallel 1, 2, 4, … up to a node, then pipeline stages of a
        node each (2, 4, …) while the cluster has the GPUs."""
        if name in self._gpus:
            return self._gpus[name]
        spec = self.specs[name]
        cfg = dict(spec["config"])
        pp = int(cfg.get("pipeline_parallel_size", 1) or 1)
        if cfg.get("tensor_parallel_size"):
            self._check_engine(name, cfg)
            self._gpus[name] = int(cfg["tensor_parallel_size"]) * pp
            return self._gpus[name]
        layouts = []
        tp = 1
        while tp <= self.per_node:
            layouts.append((tp, pp))
            tp *= 2
        if "pipeline_parallel_size" not in cfg:
            stages = 2
            while self.per_node * stages <= self.world:
                layouts.append((self.per_node, stages))
                stages *= 2
        last = None
        for tp, stages in layouts:
            try:
                self._check_engine(name, {**cfg, "tensor_parallel_size": tp,
                                          **({"pipeline_parallel_size": stages} if stages > 1 else {})})
            except UsageError as ex:
                last = ex
                continue
            self._gpus[name] = tp * stages
            if stages > 1 and "pipeline_parallel_size" not in cfg:
                self.specs[name] = {**spec, "config": {**cfg, "pipeline_parallel_size": stages}}
            return self._gpus[name]
        top = layouts[-1][0] * layouts[-1][1]
        raise UsageError(f"workload.services.{name}: {spec['engine']} cannot hold the model on up to {top} GPU(s) "
                         f"of the cluster ({self.context.hardware.device().name}) per replica: "
                         f"{str(last).removeprefix(f'workload.services.{name}: ')}")

    def _check_engine(self, name: str, cfg: dict) -> None:
        """Build the engine as a one-framework experiment on the cluster's GPU: its config is
        checked and its memory planned (a model that does not fit is a UsageError naming the
        service)."""
        from labsim.config import from_dict
        from labsim.orchestrator import Orchestrator

        exp = from_dict(self._experiment(name, cfg), f"workload.services.{name}")
        exp.base_dir = self.context.base_dir
        try:
            Orchestrator(exp).check()
        except LabsimError as ex:
            lines = [line.strip() for line in str(ex).splitlines() if line.strip()]
            text = " ".join(lines[1:] if len(lines) > 1 and lines[0].startswith("Invalid") else lines)
            text = re.sub(r"^(workload\.services\.[^:]*: )?frameworks_to_test\[0\]\.config: ", "config: ", text)
            raise UsageError(f"workload.services.{name}: {text}") from None

    def capacity(self, name: str) -> dict | None:
        """A replica's capacity on its traffic within its SLOs — ``{requests_per_s,
        output_tokens_per_s, slo}`` by ``labsim search``'s procedure — or None when the service
        gives no traffic and SLOs (nothing to measure a capacity against)."""
        if name in self._capacity:
            return self._capacity[name]
        spec = self.specs[name]
        if not spec.get("traffic") or not spec.get("slo"):
            self._capacity[name] = None
            return None
        try:
            from labsim_llm.search import Slo, search_one
        except ImportError:
            raise UsageError(f"workload.services.{name}: a capacity needs labsim-llm (pip install "
                             "labsim-llm)") from None
        where = f"workload.services.{name}"
        slos = []
        for text in spec["slo"]:
            try:
                slos.append(Slo.parse(text))
            except UsageError as ex:
                raise UsageError(f"{where}.slo: {ex}") from None
        traffic = dict(spec["traffic"])
        if "request_rate" not in traffic:
            raise UsageError(f"{where}.traffic: needs request_rate (the load the capacity search starts at)")
        per_replica = self.gpus_per_replica(name)
        cfg = dict(spec["config"])
        tp = int(cfg.get("tensor_parallel_size") or per_replica // int(cfg.get("pipeline_parallel_size", 1) or 1))
        pp = int(cfg.get("pipeline_parallel_size", 1) or 1)
        framework = {"name": name, "type": spec["engine"], "config": cfg}
        data = self._experiment(name, cfg, traffic)
        device = self.context.hardware.device().name
        task = {"data": data, "source": where, "base_dir": self.context.base_dir, "framework": framework,
                "device": None, "device_name": device, "tp": tp, "pp": pp, "knobs": {}, "slos": slos,
                "precision": 0.05, "max_replicas": 1 << 20, "target_rps": float(traffic["request_rate"])}
        found = search_one(task)
        if "capacity_rps" not in found:
            raise UsageError(f"{where}: no capacity within {', '.join(map(str, slos))}: {found.get('error')}")
        out = {"requests_per_s": found["capacity_rps"],
               "output_tokens_per_s": found["output_tokens_per_s_at_capacity"],
               "bounded": bool(found.get("capacity_bounded")),
               "slo": [str(s) for s in slos]}
        self._capacity[name] = out
        return out


def by_kind(trained: int, trained_gpu_s: float, jobs: list, price_of) -> dict:
    """summary.json's ``by_kind``: per kind what makes sense of it, from the finished training
    jobs' count and GPU-seconds held and the finished services and sessions (*jobs*);
    *price_of(job)*: USD per GPU-hour where it ran.

    training: jobs, GPU-hours (JCT is the summary's own); inference: services, their wait to
    start, GPU-hours held, and per service its replicas' capacity and the cost of a million
    output tokens at that capacity (where its traffic and SLOs priced one); interactive:
    sessions, their wait to start, GPU-hours allocated and busy."""
    import numpy as np

    def wait(some):
        x = np.asarray([j.start_s - j.arrival_s for j in some], dtype=float)
        return {"mean": float(x.mean()) / 3600, "p50": float(np.percentile(x, 50)) / 3600,
                "p99": float(np.percentile(x, 99)) / 3600}

    out = {}
    if trained:
        out[TRAINING] = {"jobs": trained, "gpu_hours": trained_gpu_s / 3600}
    served = [j for j in jobs if j.category == INFERENCE]
    if served:
        services = {}
        for j in served:
            row = services.setdefault(j.service, {"jobs": 0, "replicas": 0, "gpu_hours_held": 0.0, "usd": 0.0})
            row["jobs"] += 1
            row["replicas"] += j.replicas
            row["gpu_hours_held"] += j.held_gpu_s / 3600
            row["usd"] += j.cost_usd
            if j.tokens_per_s > 0 and not j.fractional:
                per = j.gpus / max(1, j.replicas)
                row["capacity_per_replica_rps"] = j.capacity_rps
                row["output_tokens_per_s_per_replica"] = j.tokens_per_s
                # priced only where labsim-llm found the capacity: it is there
                from labsim_llm.search import cost_per_million_output_tokens

                row["usd_per_million_output_tokens_at_capacity"] = cost_per_million_output_tokens(
                    per, price_of(j), j.tokens_per_s)
        out[INFERENCE] = {"services": len(served), "wait_h": wait(served),
                          "gpu_hours_held": sum(j.held_gpu_s for j in served) / 3600,
                          "by_service": dict(sorted(services.items()))}
    sessions = [j for j in jobs if j.category == INTERACTIVE]
    if sessions:
        held = sum(j.held_gpu_s for j in sessions) / 3600
        busy = sum(j.busy_gpu_s for j in sessions) / 3600
        out[INTERACTIVE] = {"sessions": len(sessions), "wait_h": wait(sessions),
                            "gpu_hours_allocated": held, "gpu_hours_busy": busy,
                            "busy_share": busy / held if held else None}
    return out


class Sessions:
    """How interactive sessions use their GPUs (``workload.interactive``): one cell's time on the
    cluster's GPU, and each session's busy seconds drawn burst by burst."""

    def __init__(self, spec: dict, context):
        self.spec = dict(spec)
        self.context = context
        self._cells: dict[int, tuple[float, float]] = {}
        self.cells = context.distribution(self.spec.get("cells_per_burst_dist_config")
                                          or {"type": "Constant", "value": 5}, "jobs", "interactive", "cells")
        self.think = context.distribution(self.spec.get("think_time_dist_config")
                                          or {"type": "Exponential", "mean": 30.0}, "jobs", "interactive", "think")
        self.length = context.distribution(self.spec.get("session_s_dist_config")
                                           or {"type": "Constant", "value": 7200}, "jobs", "interactive", "length")

    def cell(self, gpus: int) -> tuple[float, float]:
        """``(seconds, memory-bound share)`` of one cell on *gpus* GPUs of the cluster."""
        if gpus not in self._cells:
            try:
                from labsim_sharing.notebook import price_cell
                from labsim_training.job import resolve_model
            except ImportError:
                raise UsageError("workload.interactive: pricing cells needs labsim-sharing and labsim-training "
                                 "(pip install labsim-sharing labsim-training)") from None
            try:
                model = resolve_model(self.context, self.spec["model"])
                seconds, membound, _memory = price_cell(model, self.context.hardware.device(), self.spec, gpus)
            except UsageError as ex:
                raise UsageError(f"workload.interactive: {ex}") from None
            self._cells[gpus] = (seconds, membound)
        return self._cells[gpus]

    def session_s(self) -> float:
        return max(1.0, float(self.length.sample_n(1)[0]))

    def busy_s(self, session_s: float, gpus: int) -> float:
        """Seconds of a session of *session_s* that its cells keep the GPUs busy: think, then
        a burst of cells, until the session ends (a burst the end cuts counts up to the end),
        as the notebook tenant runs them. Drawn a block of bursts at a time (the samples past
        the session's end are left unused)."""
        import numpy as np

        cell_s, _ = self.cell(gpus)
        t = busy = 0.0
        block = 64
        while True:
            think = np.maximum(0.0, np.asarray(self.think.sample_n(block), dtype=float))
            burst = np.maximum(1.0, np.rint(np.asarray(self.cells.sample_n(block), dtype=float))) * cell_s
            # when each burst starts: the thinking and the bursts before it, and its own thinking
            starts = t + np.cumsum(think) + np.concatenate(([0.0], np.cumsum(burst)[:-1]))
            ran = int(np.searchsorted(starts >= session_s, True))    # bursts that start in the session
            busy += float(np.minimum(burst[:ran], session_s - starts[:ran]).sum())
            if ran < block or not math.isfinite(starts[-1]):
                return busy
            t = float(starts[-1] + burst[-1])
            block *= 2


__all__ = ["INFERENCE", "INTERACTIVE", "KINDS", "Services", "Sessions", "TRAINING", "by_kind", "kind_of"]

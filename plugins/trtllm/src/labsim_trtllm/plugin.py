"""The TensorRT-LLM serving framework for labsim (``type: trtllm`` in an experiment file).

>>> import labsim
>>> result = labsim.run("examples/trtllm_chat_llama8b_h100.yaml", seed=1)   # doctest: +SKIP
>>> result.summary["frameworks"]["trtllm"]["ttft_ms"]["p99"]                  # doctest: +SKIP
"""

from __future__ import annotations

import labsim
from labsim import hookimpl
from labsim_llm.engine import SUMMARY_SCHEMA, Router, ServingMetrics
from labsim_llm.engine.frontend import Frontend
from labsim_llm.engine.serving_metrics import HEADLINE

from labsim_trtllm.config import CONFIG_SCHEMA, ENGINE_PARAMETERS, graph_sizes, resolve
from labsim_trtllm.executor import Replica
from labsim_trtllm.memory import plan_kv_cache
from labsim_trtllm.pricing import TrtStepPricer


class TensorRTLLM(labsim.Framework):
    """TensorRT-LLM (PyTorch backend): in-flight batching, capacity scheduler, paged KV with reuse."""

    name = "trtllm"
    aliases = ("TRTLLM", "TensorRT-LLM", "tensorrt_llm")
    description = ("TensorRT-LLM serving engine, PyTorch backend (capacity + micro-batch "
                   "schedulers, paged KV with block reuse, overlap scheduler, TP/PP, FP8, replicas)")
    config_schema = CONFIG_SCHEMA
    summary_schema = SUMMARY_SCHEMA
    headline = HEADLINE

    def __init__(self, instance_name: str, config: dict, context):
        super().__init__(instance_name, config, context)
        from labsim_llm.models import resolve_model

        cfg = resolve(config, None, None)
        self.model = resolve_model(context, cfg["model_id"])
        self.device = context.hardware.device(cfg.get("gpu_id"))
        cfg = self.cfg = resolve(config, self.model, self.device)
        self.plan = plan_kv_cache(self.model, self.device, cfg)
        if cfg.pop("max_seq_len_from_model", False):
            # the executor caps max_seq_len at what the KV cache holds
            cfg["max_seq_len"] = min(cfg["max_seq_len"], self.plan.kv_tokens - 1)
        self.graphs = graph_sizes(cfg)
        self.pricer = TrtStepPricer(self.model, self.device, cfg, self.graphs,
                                    collective=self._collective)
        tp, pp = cfg["tensor_parallel_size"], cfg["pipeline_parallel_size"]
        self.num_gpus = tp * pp * cfg["num_replicas"]
        self.metrics = ServingMetrics(context, instance_name, self.name, num_gpus=self.num_gpus,
                                      device=self.device, dtype=cfg["dtype"],
                                      kv_capacity_blocks=self.plan.num_blocks,
                                      record_steps=cfg["record_steps"])
        self.frontend = Frontend(context.env, enabled=cfg["frontend_latency"])
        self.replicas = [Replica(self, i, self.pricer, self.plan.num_blocks, cfg)
                         for i in range(cfg["num_replicas"])]
        self.router = Router(cfg["router"], self.replicas)
        self._closed = False

    def _collective(self, kind: str, nbytes: int, ranks: int) -> float:
        op = self.context.registry.get("collectives", kind)
        return op.time(int(nbytes), ranks=int(ranks), device=self.device,
                       topology=self.context.hardware.topology)

    # -- Framework interface ------------------------------------------------------------

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()

    def _reject_reason(self, request) -> str | None:
        cfg = self.cfg
        if request.prompt_tokens + request.max_output_tokens > cfg["max_seq_len"]:
            return "exceeds_max_seq_len"
        if not cfg["enable_chunked_prefill"] and request.prompt_tokens > cfg["max_num_tokens"]:
            return "exceeds_max_num_tokens"
        need = self.replicas[0].need_total(request.prompt_tokens, request.max_output_tokens)
        if need > self.plan.num_blocks:
            return "exceeds_kv_cache"
        return None

    def submit(self, request) -> None:
        reason = self._reject_reason(request)
        if reason:
            request.finish_s = self.context.env.now
            self.metrics.request_rejected(request, reason)
            self.notify_finished(request)
            return
        self.frontend.submit(request, self._deliver)

    def _deliver(self, request) -> None:
        self.router.pick(request).submit(request)

    def request_left(self, request) -> None:
        """Called by a replica when *request* finishes."""
        self.notify_finished(request)

    def is_idle(self) -> bool:
        return all(r.outstanding == 0 for r in self.replicas)

    def summary(self) -> dict:
        if not self._closed:
            self._closed = True
            for replica in self.replicas:
                for req in replica.pending():
                    self.metrics.request_unfinished(req)
        cfg = self.cfg
        keys = ("dtype", "kv_cache_dtype", "tensor_parallel_size", "pipeline_parallel_size",
                "num_replicas", "router", "max_batch_size", "max_num_tokens", "max_seq_len",
                "tokens_per_block", "free_gpu_memory_fraction", "capacity_scheduler_policy",
                "enable_chunked_prefill", "enable_block_reuse", "disable_overlap_scheduler",
                "cuda_graph", "cuda_graph_padding", "kernel_time_scale", "step_overhead_s",
                "step_overhead_per_request_s")
        extra = {"config": {
            "model": cfg["model_id"], "device": getattr(self.device, "name", ""),
            **{k: cfg[k] for k in keys},
            "cuda_graph_batch_sizes": self.graphs,
            "memory_plan": self.plan.as_dict(),
            "engine_parameters": ENGINE_PARAMETERS,
        }}
        return self.metrics.summary(self.context.env.now, len(self.replicas), extra)


@hookimpl
def register_frameworks(register):
    register(TensorRTLLM)


__all__ = ["TensorRTLLM", "register_frameworks"]

"""The vLLM serving framework for labsim (``type: vllm`` in an experiment file).

>>> import labsim
>>> result = labsim.run("examples/vllm_chat_llama8b_h100.yaml", seed=1)   # doctest: +SKIP
>>> result.summary["frameworks"]["vllm"]["ttft_ms"]["p99"]                  # doctest: +SKIP
"""

from __future__ import annotations

import labsim
from labsim import hookimpl
from labsim.errors import UsageError

from labsim_llm.engine import SUMMARY_SCHEMA, Router, ServingMetrics, StepPricer, capture_sizes
from labsim_llm.engine.frontend import Frontend
from labsim_llm.engine.memory_plan import plan_memory
from labsim_llm.engine.serving_metrics import HEADLINE
from labsim_vllm.config import CONFIG_SCHEMA, resolve
from labsim_vllm.scheduler import Replica


class VLLM(labsim.Framework):
    """vLLM v1: continuous batching, chunked prefill, paged KV cache with prefix caching."""

    name = "vllm"
    aliases = ("VLLM", "vLLM")
    description = "vLLM v1 serving engine (scheduler, paged KV cache, prefix caching, TP/PP, replicas)"
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
        tp, pp = cfg["tensor_parallel_size"], cfg["pipeline_parallel_size"]
        self.plan = plan_memory(
            self.model, self.device, block_size=cfg["block_size"],
            gpu_memory_utilization=cfg["gpu_memory_utilization"],
            max_num_batched_tokens=cfg["max_num_batched_tokens"], max_num_seqs=cfg["max_num_seqs"],
            tp=tp, pp=pp, dtype=cfg["dtype"], kv_dtype=cfg["kv_cache_dtype"],
            model_name=cfg["model_id"])
        if cfg["max_model_len"] > self.plan.kv_tokens:
            raise UsageError(
                f"max_model_len {cfg['max_model_len']} needs more KV cache than fits "
                f"({self.plan.kv_tokens} tokens on {self.device.name}); set max_model_len ≤ "
                f"{self.plan.kv_tokens} or raise gpu_memory_utilization / tensor_parallel_size")
        graphs = capture_sizes(cfg["max_num_seqs"], cfg["max_num_batched_tokens"]) if cfg["cuda_graph"] else []
        self.pricer = StepPricer(self.model, self.device, dtype=cfg["dtype"],
                                 kv_dtype=cfg["kv_cache_dtype"], tp=tp, pp=pp,
                                 collective=self._collective, graph_sizes=graphs)
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

    def submit(self, request) -> None:
        cfg = self.cfg
        if request.prompt_tokens + request.max_output_tokens > cfg["max_model_len"]:
            request.finish_s = self.context.env.now
            self.metrics.request_rejected(request, "exceeds_max_model_len")
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
        extra = {"config": {
            "model": cfg["model_id"], "device": getattr(self.device, "name", ""),
            "dtype": cfg["dtype"], "kv_cache_dtype": cfg["kv_cache_dtype"],
            "tensor_parallel_size": cfg["tensor_parallel_size"],
            "pipeline_parallel_size": cfg["pipeline_parallel_size"],
            "num_replicas": cfg["num_replicas"], "router": cfg["router"],
            "max_num_seqs": cfg["max_num_seqs"], "max_num_batched_tokens": cfg["max_num_batched_tokens"],
            "max_model_len": cfg["max_model_len"], "block_size": cfg["block_size"],
            "enable_prefix_caching": cfg["enable_prefix_caching"],
            "enable_chunked_prefill": cfg["enable_chunked_prefill"],
            "cuda_graph": cfg["cuda_graph"], "fast_forward": cfg["fast_forward"],
            "bytes_per_token_estimate_for_network": cfg["bytes_per_token_estimate_for_network"],
            "memory_plan": self.plan.as_dict(),
        }}
        return self.metrics.summary(self.context.env.now, len(self.replicas), extra)


@hookimpl
def register_frameworks(register):
    register(VLLM)


__all__ = ["VLLM", "register_frameworks"]

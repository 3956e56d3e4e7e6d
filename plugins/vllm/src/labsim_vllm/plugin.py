"""The vLLM serving framework for labsim (``type: vllm`` in an experiment file).

>>> import labsim
>>> result = labsim.run("examples/quickstart.yaml", seed=1)   # doctest: +SKIP
>>> result.summary["frameworks"]["vllm"]["ttft_ms"]["p99"]                  # doctest: +SKIP
"""

from __future__ import annotations

from labsim import hookimpl
from labsim.errors import UsageError
from labsim_llm.engine import BlockPool, StepPricer, capture_sizes
from labsim_llm.engine.memory_plan import plan_memory
from labsim_llm.engine import pipeline
from labsim_llm.engine.replica import time_limit
from labsim_llm.engine.serving_engine import ServingEngine

from labsim_vllm import native, pipeline_span, scheduler
from labsim_vllm.attention import attention_device
from labsim_vllm.config import CONFIG_SCHEMA, resolve
from labsim_vllm.tp_traffic import traffic

#: the replica, the pipeline span, the stage pipeline and the pipelined replica the engine runs:
#: compiled (labsim_vllm.native) when every twin was built from its module as it is now, else
#: the pure classes (the same outputs)
Replica, PipelineSpan, StagePipeline, PipelinedReplica = native.classes() or (
    scheduler.Replica, pipeline_span.PipelineSpan, pipeline.StagePipeline, pipeline.PipelinedReplica)


class VLLM(ServingEngine):
    """vLLM: continuous batching, chunked prefill, paged KV cache with prefix caching (the v1
    engine; ``engine_version: v0`` for vLLM 0.6's V0 scheduling)."""

    name = "vllm"
    aliases = ("VLLM", "vLLM")
    description = "vLLM v1 serving engine (scheduler, paged KV cache, prefix caching, TP/PP, replicas)"
    config_schema = CONFIG_SCHEMA
    resolve = staticmethod(resolve)

    def setup(self) -> None:
        cfg = self.cfg
        self.plan = plan_memory(
            self.model, self.device, block_size=cfg["block_size"],
            gpu_memory_utilization=cfg["gpu_memory_utilization"],
            max_num_batched_tokens=cfg["max_num_batched_tokens"], max_num_seqs=cfg["max_num_seqs"],
            tp=cfg["tensor_parallel_size"], pp=cfg["pipeline_parallel_size"], dtype=cfg["dtype"],
            kv_dtype=cfg["kv_cache_dtype"], model_name=cfg["model_id"])
        if cfg["max_model_len"] > self.plan.kv_tokens:
            raise UsageError(
                f"max_model_len {cfg['max_model_len']} needs more KV cache than fits "
                f"({self.plan.kv_tokens} tokens on {self.device.name}); set max_model_len ≤ "
                f"{self.plan.kv_tokens} or raise gpu_memory_utilization / tensor_parallel_size")
        graphs = capture_sizes(cfg["max_num_seqs"], cfg["max_num_batched_tokens"]) if cfg["cuda_graph"] else []
        self.pricer = StepPricer(self.model, attention_device(self.device, cfg), dtype=cfg["dtype"],
                                 kv_dtype=cfg["kv_cache_dtype"], tp=cfg["tensor_parallel_size"],
                                 pp=cfg["pipeline_parallel_size"], collective=self.collective_time,
                                 graph_sizes=graphs, traffic=traffic(cfg))

    def make_replica(self, index: int):
        cfg, pp = self.cfg, self.cfg["pipeline_parallel_size"]
        if pp == 1:
            return Replica(self, index, self.pricer, self.plan.num_blocks, cfg)
        # pp batches in flight, one engine each, timed by one pipeline (labsim_llm.engine.pipeline)
        stages = StagePipeline(pp)
        replica = PipelinedReplica(self.context.env, [])
        if cfg["engine_version"] == "v0":
            # V0: pp virtual engines, each a scheduler with max_num_seqs and 1/pp of the KV blocks
            # (vllm/core/scheduler.py 0.6: ``num_gpu_blocks //= pipeline_parallel_size``)
            shares: list[tuple[dict, int, BlockPool | None]] = [(cfg, self.plan.num_blocks // pp, None)] * pp
        else:
            # v1: one scheduler; its max_num_seqs bounds the requests of all batches together
            pool = BlockPool(self.plan.num_blocks, cfg["block_size"], cfg["enable_prefix_caching"])
            seqs = cfg["max_num_seqs"]
            shares = [({**cfg, "max_num_seqs": max(1, seqs // pp + (i < seqs % pp))}, self.plan.num_blocks, pool)
                      for i in range(pp)]
        span = self._pipeline_span(replica)
        replica.engines = [Replica(self, index, self.pricer, blocks, c, pool=pool, pipeline=stages,
                                   peers=replica, span=span) for c, blocks, pool in shares]
        return replica

    def _pipeline_span(self, replica):
        """With fast-forward, the process that lands the pipeline's batches, the quiet ones
        without an event each (:mod:`labsim_vllm.pipeline_span`); None when a step must be
        one event (fast_forward off, multi-step scheduling)."""
        cfg = self.cfg
        if not cfg["fast_forward"] or cfg["num_scheduler_steps"] > 1 or cfg.get("async_scheduling"):
            return None
        return PipelineSpan(self.context.env, replica, time_limit(self.context))

    def reject_reason(self, request) -> str | None:
        if request.prompt_tokens + request.max_output_tokens > self.cfg["max_model_len"]:
            return "exceeds_max_model_len"
        return None

    def admit_limits(self) -> tuple[int, float]:
        """Every request whose prompt + output fits ``max_model_len`` is admitted."""
        return self.cfg["max_model_len"], float("inf")

    def summary_config(self) -> dict:
        cfg = self.cfg
        return {
            "model": cfg["model_id"], "engine_version": cfg["engine_version"],
            "device": getattr(self.device, "name", ""),
            "dtype": cfg["dtype"], "kv_cache_dtype": cfg["kv_cache_dtype"],
            "tensor_parallel_size": cfg["tensor_parallel_size"],
            "pipeline_parallel_size": cfg["pipeline_parallel_size"],
            "num_replicas": cfg["num_replicas"], "router": cfg["router"],
            "max_num_seqs": cfg["max_num_seqs"], "max_num_batched_tokens": cfg["max_num_batched_tokens"],
            "max_model_len": cfg["max_model_len"], "block_size": cfg["block_size"],
            "enable_prefix_caching": cfg["enable_prefix_caching"],
            "enable_chunked_prefill": cfg["enable_chunked_prefill"],
            "async_output_processing": cfg["async_output_processing"],
            "cuda_graph": cfg["cuda_graph"], "fast_forward": cfg["fast_forward"],
            "disable_custom_all_reduce": cfg["disable_custom_all_reduce"],
            "bytes_per_token_estimate_for_network": self.bytes_per_token(cfg, self.context),
            "memory_plan": self.plan.as_dict(),
        }


@hookimpl
def register_frameworks(register):
    register(VLLM)


__all__ = ["VLLM", "register_frameworks"]

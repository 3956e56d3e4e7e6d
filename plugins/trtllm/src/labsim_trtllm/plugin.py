"""The TensorRT-LLM serving framework for labsim (``type: trtllm`` in an experiment file).

>>> import labsim
>>> result = labsim.run("examples/trtllm_chat_llama8b_h100.yaml", seed=1)   # doctest: +SKIP
>>> result.summary["frameworks"]["trtllm"]["ttft_ms"]["p99"]                  # doctest: +SKIP
"""

from __future__ import annotations

from labsim import hookimpl
from labsim_llm.engine.serving_engine import ServingEngine

from labsim_trtllm import executor, native, pricing
from labsim_trtllm.config import CONFIG_SCHEMA, ENGINE_PARAMETERS, graph_sizes, resolve
from labsim_trtllm.memory import plan_kv_cache

#: the executor replica: its compiled twin when built and current (:mod:`labsim_trtllm.native`),
#: else the pure class; both give the same outputs
Replica = native.classes() or executor.Replica
#: the step pricer, likewise
TrtStepPricer = native.pricer() or pricing.TrtStepPricer


class TensorRTLLM(ServingEngine):
    """TensorRT-LLM (PyTorch backend): in-flight batching, capacity scheduler, paged KV with reuse."""

    name = "trtllm"
    aliases = ("TRTLLM", "TensorRT-LLM", "tensorrt_llm")
    description = ("TensorRT-LLM serving engine, PyTorch backend (capacity + micro-batch "
                   "schedulers, paged KV with block reuse, overlap scheduler, TP/PP, FP8, replicas)")
    config_schema = CONFIG_SCHEMA
    resolve = staticmethod(resolve)

    def setup(self) -> None:
        cfg = self.cfg
        self.plan = plan_kv_cache(self.model, self.device, cfg)
        if cfg.pop("max_seq_len_from_model", False):
            # the executor caps max_seq_len at what the KV cache holds
            cfg["max_seq_len"] = min(cfg["max_seq_len"], self.plan.kv_tokens - 1)
        self.graphs = graph_sizes(cfg)
        self.pricer = TrtStepPricer(self.model, self.device, cfg, self.graphs,
                                    collective=self.collective_time,
                                    collective_cost=self.collective_cost)

    def make_replica(self, index: int) -> executor.Replica:
        return Replica(self, index, self.pricer, self.plan.num_blocks, self.cfg)

    def reject_reason(self, request) -> str | None:
        prompt = request.prompt_tokens
        total = prompt + request.max_output_tokens
        cfg = self.cfg
        if total > cfg["max_seq_len"]:
            return "exceeds_max_seq_len"
        if not cfg["enable_chunked_prefill"] and prompt > cfg["max_num_tokens"]:
            return "exceeds_max_num_tokens"
        need = self.replicas[0].need_total(prompt, request.max_output_tokens)
        if need > self.plan.num_blocks:
            return "exceeds_kv_cache"
        return None

    def admit_limits(self) -> tuple[int, float]:
        """``(total, prompt)``: the most prompt + output tokens and the longest prompt that
        :meth:`reject_reason` lets through (the serving engine admits such requests without
        asking it). Each check is a bound on one of the two (a request's block reservation
        grows with its total only)."""
        cfg = self.cfg
        replica = self.replicas[0]
        # need_total(total, 0) <= num_blocks  ⇔  total + extra_token <= num_blocks × tpb
        total = min(cfg["max_seq_len"], self.plan.num_blocks * replica.tpb - replica.extra_token)
        prompt = float("inf") if cfg["enable_chunked_prefill"] else cfg["max_num_tokens"]
        return total, prompt

    def summary_config(self) -> dict:
        cfg = self.cfg
        keys = ("dtype", "kv_cache_dtype", "tensor_parallel_size", "pipeline_parallel_size",
                "num_replicas", "router", "max_batch_size", "max_num_tokens", "max_seq_len",
                "tokens_per_block", "free_gpu_memory_fraction", "capacity_scheduler_policy",
                "enable_chunked_prefill", "enable_block_reuse", "disable_overlap_scheduler",
                "cuda_graph", "cuda_graph_padding", "allreduce_strategy", "kernel_time_scale", "step_overhead_s",
                "step_overhead_per_request_s")
        return {
            "model": cfg["model_id"], "device": getattr(self.device, "name", ""),
            **{k: cfg[k] for k in keys},
            "cuda_graph_batch_sizes": self.graphs,
            "memory_plan": self.plan.as_dict(),
            "engine_parameters": ENGINE_PARAMETERS,
        }


@hookimpl
def register_frameworks(register):
    register(TensorRTLLM)


__all__ = ["TensorRTLLM", "register_frameworks"]

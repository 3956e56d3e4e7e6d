"""The TensorRT-LLM framework's configuration block: its JSON Schema and the resolved settings.

Defaults are those of ``trtllm-serve`` with the PyTorch backend (TensorRT-LLM
1.0–1.2; ``tensorrt_llm/commands/serve.py``, ``llmapi/llm_args.py``,
``builder.py::BuildConfig``), as written up in docs/engine_behaviour.md
(TensorRT-LLM §3). Parameters that express how TensorRT-LLM's kernels and
loop differ from vLLM's are listed in :data:`ENGINE_PARAMETERS` with the
evidence for each, or marked as assumptions.
"""

from __future__ import annotations

from labsim.errors import UsageError
from labsim_llm.engine.serving_engine import DEPLOYMENT_PROPERTIES, MODEL_PROPERTIES, base_settings

GiB = 2**30

#: CUDA-graph batch sizes of the default ``cuda_graph_config`` (max batch 128, no padding):
#: 1…31, 32, 64, 128 (llm_args.py CudaGraphConfig; docs/engine_behaviour.md TRT §3)
DEFAULT_GRAPH_SIZES = (*range(1, 33), 64, 128)

#: per-iteration CPU time of the PyExecutor loop (fetch, capacity + micro-batch scheduling,
#: input preparation, response handling). Assumption: TensorRT-LLM publishes no figure; the
#: PyTorch backend's loop is Python around C++ schedulers, so labsim uses the same order as its
#: vLLM assumption (0.5 ms). With the overlap scheduler (default) it is hidden behind the GPU
#: (step = max(GPU, CPU)); without it, it adds to every step.
DEFAULT_STEP_OVERHEAD_S = 5e-4
#: per scheduled request CPU time (assumption, as for vLLM: 8 µs)
DEFAULT_STEP_OVERHEAD_PER_REQUEST_S = 8e-6
#: memory outside torch the profiling pass sees: CUDA graphs and NCCL ("NCCL and CUDA graphs"
#: in KvCacheCreator's log). Assumption: the graphs of the 34 default sizes share one memory
#: pool; the field text's "up to 200 MB per graph" is an upper bound per graph, so 0.5 GiB in all.
DEFAULT_CUDA_GRAPH_BYTES = int(0.5 * GiB)
#: all-reduce workspaces under TP (TRT-LLM custom all-reduce + NCCL); assumption 0.5 GiB, as the
#: vLLM plugin assumes for its custom all-reduce buffers
TP_WORKSPACE_BYTES = int(0.5 * GiB)

#: How TensorRT-LLM's engine differs from vLLM's in the cost model, and the evidence.
ENGINE_PARAMETERS = {
    "overlap_scheduler": "on by default (TorchLlmArgs.disable_overlap_scheduler=False; docs "
                         "'Overlap Scheduler'): CPU work hidden, step = max(GPU, CPU); one extra "
                         "decode step per request; arrivals join one iteration later",
    "cuda_graphs": "decode-only batches of exactly 1..32, 64, 128 requests replay a graph (one "
                   "launch); every other step runs eager (CudaGraphConfig, enable_padding=False)",
    "kernel_time_scale": "1.0: relative efficiency of TRT-LLM's attention/GEMM kernels against "
                         "vLLM's is unverified (docs/engine_behaviour.md TRT §4) — calibrate it",
    "step_overhead_s": "assumption (see DEFAULT_STEP_OVERHEAD_S)",
}

_DTYPES = ["auto", "bf16", "fp16", "fp8", "bfloat16", "float16"]

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "A TensorRT-LLM engine, PyTorch backend (defaults of trtllm-serve 1.0-1.2).",
    "properties": {
        **MODEL_PROPERTIES,
        "dtype": {"enum": _DTYPES, "default": "auto", "description": "Weight precision; auto = the "
                  "model's own; fp8 needs a GPU with FP8 tensor cores (Ada, Hopper, Blackwell)."},
        "kv_cache_dtype": {"enum": _DTYPES, "default": "auto", "description": "KV-cache precision "
                           "(KvCacheConfig.dtype); auto = dtype; fp8 needs FP8 hardware."},
        "max_batch_size": {"type": "integer", "minimum": 1, "default": 2048,
                           "description": "Most requests in flight (BuildConfig.max_batch_size)."},
        "max_num_tokens": {"type": "integer", "minimum": 1, "default": 8192,
                           "description": "Token budget of one iteration (BuildConfig.max_num_tokens)."},
        "max_seq_len": {"type": ["integer", "null"], "minimum": 1, "default": None,
                        "description": "Longest prompt + output; null = the model's "
                        "max_position_embeddings, capped at what the KV cache holds. Longer "
                        "requests are rejected."},
        "tokens_per_block": {"type": "integer", "minimum": 1, "default": 32,
                             "description": "Tokens per KV block (KvCacheConfig.tokens_per_block)."},
        "free_gpu_memory_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                     "default": 0.9, "description": "Share of the memory left after "
                                     "weights and the profiling pass given to the KV cache."},
        "kv_cache_max_tokens": {"type": ["integer", "null"], "minimum": 1, "default": None,
                                "description": "KvCacheConfig.max_tokens: an upper bound on KV tokens."},
        "capacity_scheduler_policy": {"enum": ["GUARANTEED_NO_EVICT", "MAX_UTILIZATION"],
                                      "default": "GUARANTEED_NO_EVICT",
                                      "description": "GUARANTEED_NO_EVICT admits a request only when "
                                      "blocks for its whole output are free; MAX_UTILIZATION packs "
                                      "requests and pauses the newest when blocks run out."},
        "enable_chunked_prefill": {"type": "boolean", "default": False,
                                   "description": "Chunked context (off in trtllm-serve); chunks are "
                                   "multiples of tokens_per_block."},
        "enable_block_reuse": {"type": "boolean", "default": True,
                               "description": "KV-cache block reuse across requests (prefix caching)."},
        "disable_overlap_scheduler": {"type": "boolean", "default": False,
                                      "description": "Turn off the overlap scheduler (on by default; "
                                      "pipeline parallelism runs a loop without it)."},
        "cuda_graph": {"type": "boolean", "default": True,
                       "description": "CUDA graphs for decode-only batches (cuda_graph_config)."},
        "cuda_graph_padding": {"type": "boolean", "default": False,
                               "description": "CudaGraphConfig.enable_padding: pad decode batches up "
                               "to a captured size."},
        "cuda_graph_max_batch_size": {"type": "integer", "minimum": 1, "default": 128,
                                      "description": "Largest captured decode batch."},
        "allreduce_strategy": {"enum": ["AUTO", "NCCL"], "default": "AUTO",
                               "description": "TorchLlmArgs.allreduce_strategy under tensor "
                               "parallelism: AUTO takes each all-reduce's fastest strategy (its own "
                               "kernels or NCCL) on Hopper and Blackwell, NCCL elsewhere; NCCL "
                               "forces NCCL (labsim_trtllm.tp_traffic)."},
        "kernel_time_scale": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                              "description": "Multiplies every step's GPU time: TRT-LLM's kernel "
                              "efficiency relative to the calibrated cost model (unverified; 1.0)."},
        "step_overhead_s": {"type": "number", "minimum": 0, "default": DEFAULT_STEP_OVERHEAD_S,
                            "description": "CPU time per iteration (assumption, see labsim_trtllm.config)."},
        "step_overhead_per_request_s": {"type": "number", "minimum": 0,
                                        "default": DEFAULT_STEP_OVERHEAD_PER_REQUEST_S,
                                        "description": "Extra CPU time per scheduled request (assumption)."},
        "cuda_graph_memory_bytes": {"type": "number", "minimum": 0, "default": DEFAULT_CUDA_GRAPH_BYTES,
                                    "description": "Memory of the captured graphs, outside the KV cache."},
        **DEPLOYMENT_PROPERTIES,
    },
}

def graph_sizes(cfg: dict) -> list[int]:
    """Decode batch sizes that replay a CUDA graph.

    Without padding (the default): 1…31 and the powers of two from 32 up to
    ``cuda_graph_max_batch_size`` (128 → 1…32, 64, 128). With padding: 1, 2, 4, 8,
    then powers of two; a batch pads up to the next size.
    """
    if not cfg["cuda_graph"]:
        return []
    top = min(cfg["cuda_graph_max_batch_size"], cfg["max_batch_size"])
    sizes = set() if cfg["cuda_graph_padding"] else set(range(1, min(top, 31) + 1))
    p = 1
    while p <= top:
        sizes.add(p)
        p *= 2
    sizes.add(top)
    return sorted(sizes)


def resolve(config: dict, model, device) -> dict:
    """The settings the engine runs with, defaults filled in and checked."""
    cfg = base_settings(config, CONFIG_SCHEMA, "trtllm", model)
    if model is None:
        return cfg
    dev_name = getattr(device, "name", "this GPU")
    for key in ("dtype", "kv_cache_dtype"):
        if cfg[key] == "fp8" and not device.supports("fp8"):
            supported = ", ".join(d for d in ("bf16", "fp16") if device.supports(d))
            raise UsageError(
                f"{key} fp8 needs FP8 tensor cores (Ada, Hopper or Blackwell); {dev_name} has none "
                f"— TensorRT-LLM rejects FP8 {'weights' if key == 'dtype' else 'KV cache'} there. "
                f"Use {key}: {supported.split(', ')[0] if supported else 'bf16'} or an FP8-capable GPU")
    if cfg["max_seq_len"] is None:
        cfg["max_seq_len"] = int(getattr(model, "max_position_embeddings", 0) or 8192)
        cfg["max_seq_len_from_model"] = True
    return cfg


__all__ = ["CONFIG_SCHEMA", "resolve", "graph_sizes", "ENGINE_PARAMETERS", "DEFAULT_GRAPH_SIZES"]

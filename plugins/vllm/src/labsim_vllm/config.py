"""The vLLM framework's configuration block: its JSON Schema and the resolved settings.

Defaults are vLLM v1's own (0.10/0.11, ``vllm/engine/arg_utils.py`` and
``vllm/config``; docs/engine_behaviour.md §2) unless marked otherwise.
"""

from __future__ import annotations

from labsim.errors import UsageError
from labsim_llm.engine.serving_engine import DEPLOYMENT_PROPERTIES, MODEL_PROPERTIES, base_settings

GiB = 2**30

#: per-step CPU time of the synchronous v1 EngineCore loop (schedule + prepare inputs + update
#: outputs) that is not hidden behind the GPU. Assumption: vLLM publishes no figure
#: (docs/engine_behaviour.md §4: "unverified; calibrate"); 0.5 ms is the order of one
#: schedule()+_prepare_inputs() pass of a small batch, well under the ~2.3 ms one PR log shows
#: for schedule() with a KV connector (vllm#23622). Override it with a measured value.
DEFAULT_STEP_OVERHEAD_S = 5e-4
#: per scheduled request CPU time (input preparation, output processing); assumption 8 µs,
#: the order of vLLM's per-request Python bookkeeping in the scheduler and model runner
DEFAULT_STEP_OVERHEAD_PER_REQUEST_S = 8e-6

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "A vLLM v1 engine (defaults of vLLM 0.10/0.11 unless noted).",
    "properties": {
        **MODEL_PROPERTIES,
        "dtype": {"type": "string", "default": "auto", "description": "Weight/activation precision; "
                  "auto = the model's own (vLLM --dtype auto)."},
        "kv_cache_dtype": {"type": "string", "default": "auto", "description": "KV-cache precision; "
                           "auto = dtype (vLLM --kv-cache-dtype auto)."},
        "block_size": {"type": "integer", "minimum": 1, "default": 16,
                       "description": "Tokens per KV block (vLLM: 16 on CUDA, platforms/cuda.py)."},
        "gpu_memory_utilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                   "default": 0.9, "description": "Share of GPU memory vLLM may use."},
        "max_num_seqs": {"type": ["integer", "null"], "minimum": 1, "default": None,
                         "description": "Most running requests; null = vLLM's rule: 1024 on GPUs with "
                         "≥ 70 GiB that are not A100, else 256 (EngineArgs.get_batch_defaults)."},
        "max_num_batched_tokens": {"type": ["integer", "null"], "minimum": 1, "default": None,
                                   "description": "Token budget of one step; null = 8192 on GPUs with "
                                   "≥ 70 GiB that are not A100, else 2048 (OpenAI server context)."},
        "max_model_len": {"type": ["integer", "null"], "minimum": 1, "default": None,
                          "description": "Longest prompt + output; null = the model's "
                          "max_position_embeddings. Longer requests are rejected."},
        "enable_chunked_prefill": {"type": "boolean", "default": True,
                                   "description": "v1 always chunks; false admits whole prompts only."},
        "enable_prefix_caching": {"type": "boolean", "default": True,
                                  "description": "Automatic prefix caching (on by default in v1)."},
        "cuda_graph": {"type": "boolean", "default": True,
                       "description": "CUDA graphs (vLLM 0.11 FULL_AND_PIECEWISE); false = --enforce-eager."},
        "fast_forward": {"type": "boolean", "default": True,
                         "description": "Advance unchanged decode batches many steps per event "
                         "(identical results; false steps one iteration per event)."},
        "step_overhead_s": {"type": "number", "minimum": 0, "default": DEFAULT_STEP_OVERHEAD_S,
                            "description": "CPU time per step not hidden behind the GPU (assumption, "
                            "see labsim_vllm.config)."},
        "step_overhead_per_request_s": {"type": "number", "minimum": 0,
                                        "default": DEFAULT_STEP_OVERHEAD_PER_REQUEST_S,
                                        "description": "Extra CPU time per scheduled request (assumption)."},
        "scheduler_iteration_delay_s": {"type": "number", "minimum": 0, "default": 0.0,
                                        "description": "Extra delay added to every step (seed-001 key)."},
        "bytes_per_token_estimate_for_network": {"type": "number", "minimum": 0, "default": 2,
                                                 "description": "Seed-001 key; recorded in the summary "
                                                 "(the engine does not model the client network)."},
        "num_scheduler_steps": {"type": "integer", "minimum": 1, "default": 1,
                                "description": "vLLM 0.6 multi-step scheduling (--num-scheduler-steps): "
                                "a decode batch runs this many steps per scheduling round and new "
                                "requests wait for the round to end (labsim_llm.engine.multistep); "
                                "1 = off (vLLM v1 has no multi-step)."},
        **DEPLOYMENT_PROPERTIES,
    },
}


def batch_defaults(device) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM picks for the OpenAI server on *device*."""
    memory = float(getattr(device, "memory_bytes", 0) or 0)
    name = str(getattr(device, "name", "")).lower()
    if memory >= 70 * GiB and "a100" not in name:
        return 8192, 1024
    return 2048, 256


def resolve(config: dict, model, device) -> dict:
    """The settings the engine runs with, defaults filled in and checked."""
    cfg = base_settings(config, CONFIG_SCHEMA, "vllm", model)
    if model is None:
        return cfg
    if cfg["max_model_len"] is None:
        cfg["max_model_len"] = int(getattr(model, "max_position_embeddings", 0) or 8192)
    tokens, seqs = batch_defaults(device)
    if cfg["max_num_batched_tokens"] is None:
        cfg["max_num_batched_tokens"] = (tokens if cfg["enable_chunked_prefill"]
                                         else max(cfg["max_model_len"], tokens))
    if cfg["max_num_seqs"] is None:
        cfg["max_num_seqs"] = min(seqs, cfg["max_num_batched_tokens"])
    if not cfg["enable_chunked_prefill"] and cfg["max_num_batched_tokens"] < cfg["max_model_len"]:
        raise UsageError(f"max_num_batched_tokens ({cfg['max_num_batched_tokens']}) is smaller than "
                         f"max_model_len ({cfg['max_model_len']}) with enable_chunked_prefill false: a "
                         "long prompt could never be scheduled; raise max_num_batched_tokens or lower "
                         "max_model_len")
    return cfg


__all__ = ["CONFIG_SCHEMA", "resolve", "batch_defaults", "DEFAULT_STEP_OVERHEAD_S"]

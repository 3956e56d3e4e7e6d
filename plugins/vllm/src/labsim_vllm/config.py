"""The vLLM framework's configuration block: its JSON Schema and the resolved settings.

Defaults are vLLM v1's own (0.10/0.11, ``vllm/engine/arg_utils.py`` and
``vllm/config``; docs/engine_behaviour.md §2) unless marked otherwise; with
``engine_version: v0`` the undecided ones follow vLLM 0.6.0's V0 engine.
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
        "engine_version": {"enum": ["v1", "v0"], "default": "v1",
                           "description": "vLLM engine generation. v1 (0.8 and later): every step "
                           "runs the running requests first, then new prompts. v0 (0.7 and earlier): "
                           "without chunked prefill a step runs either new whole prompts (first, FCFS, "
                           "keeping 1 % of the blocks free) or the decodes, never both; its defaults are "
                           "those of vLLM 0.6 (see labsim_vllm.config)."},
        "enable_chunked_prefill": {"type": ["boolean", "null"], "default": None,
                                   "description": "Split long prompts over steps. null = on in v1; in v0 on "
                                   "only when max_model_len > 32768 (vLLM 0.6 OpenAI server). False admits "
                                   "whole prompts only."},
        "enable_prefix_caching": {"type": ["boolean", "null"], "default": None,
                                  "description": "Automatic prefix caching; null = on in v1, off in v0."},
        "async_output_processing": {"type": ["boolean", "null"], "default": None,
                                    "description": "v0 only (vLLM 0.6 async output processor, on unless "
                                    "--disable-async-output-proc): a step's tokens are processed while "
                                    "the next step runs, so they reach the client when it ends. null = "
                                    "on in v0 without pipeline parallelism (vLLM turns it off under PP); "
                                    "v1 has no such lag."},
        "async_scheduling": {"type": "boolean", "default": False,
                             "description": "v1 only: vLLM's --async-scheduling (off by default in 0.10/0.11, on "
                             "by default in later releases, vllm#27614). The engine core schedules the next "
                             "step while the GPU runs the current one: the step CPU overhead is hidden (a step "
                             "lasts max(GPU, CPU)), and a request that reaches a busy engine starts one step "
                             "later."},
        "disable_custom_all_reduce": {"type": "boolean", "default": False,
                                      "description": "vLLM's --disable-custom-all-reduce: tensor-parallel "
                                      "all-reduces go to NCCL. By default vLLM runs its own one-/two-shot "
                                      "kernels on TP 2/4/6/8 over NVLink below 8 MiB (labsim_vllm.tp_traffic)."},
        "cuda_graph": {"type": "boolean", "default": True,
                       "description": "CUDA graphs (vLLM 0.11 FULL_AND_PIECEWISE); false = --enforce-eager."},
        "fast_forward": {"type": "boolean", "default": True,
                         "description": "Advance unchanged decode batches many steps per event; "
                         "under pipeline parallelism land decode-only batches without an event "
                         "each (identical results; false steps one iteration per event)."},
        "step_overhead_s": {"type": "number", "minimum": 0, "default": DEFAULT_STEP_OVERHEAD_S,
                            "description": "CPU time per step not hidden behind the GPU (assumption, "
                            "see labsim_vllm.config)."},
        "step_overhead_per_request_s": {"type": "number", "minimum": 0,
                                        "default": DEFAULT_STEP_OVERHEAD_PER_REQUEST_S,
                                        "description": "Extra CPU time per scheduled request (assumption)."},
        "scheduler_iteration_delay_s": {"type": "number", "minimum": 0, "default": 0.0,
                                        "description": "Extra delay added to every step (seed-001 key)."},
        "num_scheduler_steps": {"type": "integer", "minimum": 1, "default": 1,
                                "description": "vLLM 0.6 multi-step scheduling (--num-scheduler-steps): "
                                "a decode batch runs this many steps per scheduling round and new "
                                "requests wait for the round to end (labsim_llm.engine.multistep); "
                                "1 = off (vLLM v1 has no multi-step)."},
        **DEPLOYMENT_PROPERTIES,
    },
}


#: vLLM 0.6.0 V0 defaults (``SchedulerConfig``/``EngineArgs``): max_num_seqs 256, and without
#: chunked prefill max_num_batched_tokens = max(max_model_len, 2048)
V0_BATCH_DEFAULTS = (2048, 256)
#: V0 with chunked prefill: max_num_batched_tokens 512 ("the best balance between ITL and TTFT
#: on A100", vLLM 0.6.0 ``SchedulerConfig``)
V0_CHUNKED_BATCHED_TOKENS = 512
#: V0's OpenAI server turns chunked prefill on by default only for contexts above 32 K
#: (vLLM 0.6.0 ``EngineArgs.create_engine_config``: ``use_long_context = max_model_len > 32K``)
V0_CHUNKED_ABOVE_LEN = 32 * 1024


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
    v0 = cfg["engine_version"] == "v0"
    if cfg["enable_chunked_prefill"] is None:
        cfg["enable_chunked_prefill"] = cfg["max_model_len"] > V0_CHUNKED_ABOVE_LEN if v0 else True
    if cfg["enable_prefix_caching"] is None:
        cfg["enable_prefix_caching"] = not v0
    pp = cfg["pipeline_parallel_size"] > 1
    if cfg["async_output_processing"] is None:
        # ModelConfig.verify_async_output_proc: "Async output processing can not be enabled with
        # pipeline parallel" (vLLM 0.6-0.7, which then turns it off)
        cfg["async_output_processing"] = v0 and not pp
    elif cfg["async_output_processing"] and not v0:
        raise UsageError("async_output_processing is a vLLM V0 feature: set engine_version: v0 "
                         "or leave async_output_processing out")
    elif cfg["async_output_processing"] and pp:
        raise UsageError("async_output_processing: vLLM V0 turns it off under pipeline parallelism "
                         f"(pipeline_parallel_size {cfg['pipeline_parallel_size']}); leave it out or set false")
    if cfg["async_scheduling"] and v0:
        raise UsageError("async_scheduling is a vLLM v1 feature (engine_version: v1); V0 overlaps CPU "
                         "work with async_output_processing instead")
    if cfg["async_scheduling"] and pp:
        raise UsageError("async_scheduling with pipeline_parallel_size > 1: vLLM 0.11 refuses the "
                         "combination; leave one of them out")
    tokens, seqs = V0_BATCH_DEFAULTS if v0 else batch_defaults(device)
    if cfg["max_num_batched_tokens"] is None:
        if cfg["enable_chunked_prefill"]:
            cfg["max_num_batched_tokens"] = V0_CHUNKED_BATCHED_TOKENS if v0 else tokens
        else:
            cfg["max_num_batched_tokens"] = max(cfg["max_model_len"], tokens)
    if cfg["max_num_seqs"] is None:
        cfg["max_num_seqs"] = min(seqs, cfg["max_num_batched_tokens"])
    if not cfg["enable_chunked_prefill"] and cfg["max_num_batched_tokens"] < cfg["max_model_len"]:
        raise UsageError(f"max_num_batched_tokens ({cfg['max_num_batched_tokens']}) is smaller than "
                         f"max_model_len ({cfg['max_model_len']}) with enable_chunked_prefill false: a "
                         "long prompt could never be scheduled; raise max_num_batched_tokens or lower "
                         "max_model_len")
    return cfg


__all__ = ["CONFIG_SCHEMA", "resolve", "batch_defaults", "DEFAULT_STEP_OVERHEAD_S"]

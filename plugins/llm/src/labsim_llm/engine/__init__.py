"""Machinery the serving-engine plugins (labsim-vllm, labsim-trtllm) share.

* :mod:`.kv_cache` — a paged KV cache with prefix caching and LRU eviction;
* :mod:`.step_cost` — the price of one engine step from the hardware cost model;
* :mod:`.memory_plan` — how many KV blocks fit beside the weights;
* :mod:`.serving_metrics` — per-request / per-step tables and the summary section;
* :mod:`.router` — spreading requests over replicas;
* :mod:`.pipeline` — several batches in flight through the stages of a PP replica;
* :mod:`.replica` — the shell of one replica (submit, idle, finish, the GPU seam, cache lookups).

It registers nothing: it is a library.
"""

from labsim_llm.engine.kv_cache import BlockPool, block_ids, block_keys
from labsim_llm.engine.memory_plan import MemoryPlan, plan_memory
from labsim_llm.engine.pipeline import PipelinedReplica, StagePipeline
from labsim_llm.engine.replica import ReplicaShell
from labsim_llm.engine.router import POLICIES, Router
from labsim_llm.engine.serving_metrics import SUMMARY_SCHEMA, GapHistogram, ServingMetrics
from labsim_llm.engine.step_cost import StepPricer, TpStepTraffic, capture_sizes

__all__ = [
    "BlockPool",
    "GapHistogram",
    "MemoryPlan",
    "POLICIES",
    "PipelinedReplica",
    "ReplicaShell",
    "Router",
    "SUMMARY_SCHEMA",
    "ServingMetrics",
    "StagePipeline",
    "StepPricer",
    "TpStepTraffic",
    "block_ids",
    "block_keys",
    "capture_sizes",
    "plan_memory",
]

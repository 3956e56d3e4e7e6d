"""Every documented setting changes something, or the docs say why not (issue 11, item 12).

The experiment schema is walked (``compose_experiment_schema``: the kernel's sections, and the
vLLM, TensorRT-LLM and fifo ``config`` blocks, the ``client_profiles`` and ``trace`` workloads
and a written-out device under ``$defs``) and every key it documents must appear here once:

* in one of the ``*_CASES`` tables (gathered by :func:`all_cases`), with a value different
  from its default (and, where the key only matters in a regime, the regime: higher load,
  shared prefixes, a client link ...). A short run with
  the key set must differ from the same run without it — in the summary's measured figures or
  the per-record tables, not merely in the echo of the settings;
* in :data:`SAME`, a key that must NOT change any result by design (an alias, a speed switch),
  checked for equality instead;
* in :data:`NO_EFFECT_HERE`, with the reason and the doc that says it (each reason names the
  field whose description carries it, and the test checks that description is there).

A key that validates and changes nothing fails here, by name. The files the output keys
choose, answers that are not streamed, and network links that would go unused have tests of
their own at the end.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import labsim
import pytest
from labsim.schema import compose_experiment_schema

FRAMEWORKS = ("vllm", "trtllm", "fifo")
WORKLOADS = ("client_profiles", "trace")

# -- the experiments -----------------------------------------------------------------------

PROFILE = {
    "profile_name": "p", "weight": 1.0, "request_rate": 10.0,
    "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 300, "sigma": 150, "is_int": True,
                                  "min": 8, "max": 1200},
    "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 40, "sigma": 20, "is_int": True,
                                      "min": 2, "max": 160},
}


def base(kind: str) -> dict:
    """The baseline experiment of a component *kind*: a framework name, or ``trace``."""
    framework = "vllm" if kind in ("trace", "client_profiles", "kernel") else kind
    workload = ({"type": "trace", "path": "builtin:splitwise_conv", "time_scale": 0.1,
                 "max_requests": 24} if kind == "trace" else
                {"type": "client_profiles", "total_duration": 3.0 if framework != "fifo" else 1.5,
                 "client_profiles": [copy.deepcopy(PROFILE)]})
    return {
        "name": "keys", "simulation": {"max_simulation_time": 600, "random_seed": 3},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": workload,
        "frameworks_to_test": [{"name": "f", "type": framework, "config": {"model": "Llama-3.1-8B"}}],
        "metrics_config": {"percentiles_to_calculate": [0.5, 0.99]},
    }


SHORTHANDS = {"fw": "frameworks_to_test.0.config", "wl": "workload",
              "prof": "workload.client_profiles.0", "hw": "hardware_profile",
              "link": "hardware_profile.network_links.0", "dev": "hardware_profile.compute_devices.0"}
DELETE = object()


def apply(cfg: dict, edits: dict) -> dict:
    """*cfg* with each ``dotted.path: value`` of *edits* set (``DELETE`` removes the key)."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in edits.items():
        head, _, rest = dotted.partition(".")
        dotted = f"{SHORTHANDS[head]}.{rest}" if head in SHORTHANDS and rest else SHORTHANDS.get(dotted, dotted)
        *parents, last = dotted.split(".")
        node = cfg
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last):int(last) + 1] = [copy.deepcopy(value)]   # replace, or append at the end
        elif value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return cfg


#: summary parts that echo the settings rather than measure the run
ECHO = ("labsim_version", "experiment", "plugins", "metrics_config", "resolved_experiment")


def measured(result) -> str:
    """What a run measured: the summary (settings echo left out) and the per-record tables."""
    summary = {k: v for k, v in result.summary.items() if k not in ECHO}
    summary["frameworks"] = {
        name: {k: v for k, v in fw.items() if k != "config"}
        for name, fw in summary.get("frameworks", {}).items()
    }
    tables = {name: result.tables[name] for name in sorted(result.tables)}
    return json.dumps({"summary": summary, "tables": tables}, sort_keys=True, default=str)


@functools.cache
def _run(text: str) -> str:
    return measured(labsim.run(json.loads(text)))


def run(cfg: dict) -> str:
    return _run(json.dumps(cfg, sort_keys=True))


# -- what each key does --------------------------------------------------------------------

LINK = {"link_id": "client", "source_id": "clients", "dest_id": "entry", "bandwidth_bps": 1e9,
        "latency_s": 0.02}
SHARED_PREFIX = {"prof.system_prompt_tokens": 600}
CONVERSATION = {"prof.conversational_probability": 0.6, "prof.think_time_dist_config":
                {"type": "Constant", "value": 0.2}}
HIGH_LOAD = {"prof.request_rate": 200.0, "wl.total_duration": 0.3}
MEMORY_PRESSURE = {"prof.request_rate": 200.0, "wl.total_duration": 0.3,
                   "prof.prompt_tokens_dist_config": {"type": "Constant", "value": 1500},
                   "prof.max_output_tokens_dist_config": {"type": "Constant", "value": 300}}
TWO_REPLICAS = {"fw.num_replicas": 2, **SHARED_PREFIX, "prof.num_system_prompts": 4}
SHARED_STREAM = {"prof.request_rate": DELETE, "wl.request_rate": 10.0}
OWN_STREAMS_OFF = {"prof.request_rate": DELETE}
LONG_PROMPTS = {"prof.prompt_tokens_dist_config": {"type": "Constant", "value": 3000}}


def serving_cases(fw: str) -> dict:
    """Cases every serving engine shares (the MODEL_PROPERTIES and DEPLOYMENT_PROPERTIES)."""
    return {
        "model": ({}, {"fw.model": "Qwen2.5-7B"}),
        "gpu_id": ({"hw.compute_devices": [{"device_id": "g0", "device_type": "H100-SXM"},
                                           {"device_id": "g1", "device_type": "A100-SXM4-80GB"}],
                    "hw.device": DELETE, "fw.gpu_id": "g0"}, {"fw.gpu_id": "g1"}),
        "dtype": ({}, {"fw.dtype": "fp8"}),
        "tensor_parallel_size": ({}, {"fw.tensor_parallel_size": 2}),
        "pipeline_parallel_size": ({}, {"fw.pipeline_parallel_size": 2}),
        "num_replicas": ({}, {"fw.num_replicas": 2}),
        "router": (TWO_REPLICAS, {"fw.router": "prefix_affinity"}),
        "frontend_latency": ({}, {"fw.frontend_latency": fw == "fifo"}),
        "bytes_per_token_estimate_for_network": ({"hw.network_links": [LINK]},
                                                 {"fw.bytes_per_token_estimate_for_network": 2e5}),
        "record_steps": ({}, {"fw.record_steps": False}),
        "max_step_rows": ({}, {"fw.max_step_rows": 5}),
    }


ENGINE_CASES = {
    "vllm": {
        "kv_cache_dtype": ({}, {"fw.kv_cache_dtype": "fp8"}),
        "block_size": ({}, {"fw.block_size": 32}),
        "gpu_memory_utilization": ({}, {"fw.gpu_memory_utilization": 0.5}),
        "max_num_seqs": ({}, {"fw.max_num_seqs": 2}),
        "max_num_batched_tokens": ({}, {"fw.max_num_batched_tokens": 128}),
        "max_model_len": ({}, {"fw.max_model_len": 400}),
        "engine_version": ({}, {"fw.engine_version": "v0"}),
        "enable_chunked_prefill": (HIGH_LOAD, {"fw.enable_chunked_prefill": False}),
        "enable_prefix_caching": (SHARED_PREFIX, {"fw.enable_prefix_caching": False}),
        "async_output_processing": ({"fw.engine_version": "v0"}, {"fw.async_output_processing": False}),
        "async_scheduling": ({}, {"fw.async_scheduling": True}),
        "cuda_graph": ({}, {"fw.cuda_graph": False}),
        "disable_custom_all_reduce": ({"fw.tensor_parallel_size": 2}, {"fw.disable_custom_all_reduce": True}),
        "step_overhead_s": ({}, {"fw.step_overhead_s": 0.004}),
        "step_overhead_per_request_s": ({}, {"fw.step_overhead_per_request_s": 0.001}),
        "scheduler_iteration_delay_s": ({}, {"fw.scheduler_iteration_delay_s": 0.002}),
        "num_scheduler_steps": ({"fw.engine_version": "v0"}, {"fw.num_scheduler_steps": 8}),
    },
    "trtllm": {
        "kv_cache_dtype": ({}, {"fw.kv_cache_dtype": "fp8"}),
        "max_batch_size": ({}, {"fw.max_batch_size": 2}),
        "max_num_tokens": ({"fw.enable_chunked_prefill": True}, {"fw.max_num_tokens": 128}),
        "max_seq_len": ({}, {"fw.max_seq_len": 400}),
        "tokens_per_block": ({}, {"fw.tokens_per_block": 64}),
        "free_gpu_memory_fraction": ({}, {"fw.free_gpu_memory_fraction": 0.3}),
        "kv_cache_max_tokens": ({}, {"fw.kv_cache_max_tokens": 4096}),
        "capacity_scheduler_policy": ({**MEMORY_PRESSURE, "fw.kv_cache_max_tokens": 20000},
                                      {"fw.capacity_scheduler_policy": "MAX_UTILIZATION"}),
        "enable_chunked_prefill": ({**HIGH_LOAD, **LONG_PROMPTS, "fw.max_num_tokens": 4096},
                                   {"fw.enable_chunked_prefill": True}),
        "enable_block_reuse": (SHARED_PREFIX, {"fw.enable_block_reuse": False}),
        "disable_overlap_scheduler": ({}, {"fw.disable_overlap_scheduler": True}),
        "cuda_graph": ({}, {"fw.cuda_graph": False}),
        "cuda_graph_padding": ({}, {"fw.cuda_graph_padding": True}),
        "cuda_graph_max_batch_size": ({}, {"fw.cuda_graph_max_batch_size": 2}),
        "kernel_time_scale": ({}, {"fw.kernel_time_scale": 1.5}),
        "allreduce_strategy": ({"fw.tensor_parallel_size": 2}, {"fw.allreduce_strategy": "NCCL"}),
        "step_overhead_s": ({"fw.disable_overlap_scheduler": True}, {"fw.step_overhead_s": 0.004}),
        "step_overhead_per_request_s": ({"fw.disable_overlap_scheduler": True},
                                        {"fw.step_overhead_per_request_s": 0.001}),
        "cuda_graph_memory_bytes": ({}, {"fw.cuda_graph_memory_bytes": 30e9}),
    },
    "fifo": {},
}

WORKLOAD_CASES = {
    "total_duration": ({}, {"wl.total_duration": 1.0}),
    "num_requests": ({}, {"wl.num_requests": 5}),
    "random_seed": ({}, {"wl.random_seed": 7}),
    "bytes_per_token_estimate_for_network": ({"hw.network_links": [LINK]},
                                             {"wl.bytes_per_token_estimate_for_network": 2e5}),
    "concurrency": ({}, {"wl.concurrency": 2}),
}

CLIENT_PROFILES_CASES = {
    **WORKLOAD_CASES,
    "request_rate": (SHARED_STREAM, {"wl.request_rate": 20.0}),
    "arrival_process": (SHARED_STREAM, {"wl.arrival_process": "constant"}),
    "burstiness": ({**SHARED_STREAM, "wl.arrival_process": "gamma"}, {"wl.burstiness": 0.2}),
    "inter_arrival_time_dist_config": (SHARED_STREAM, {"wl.request_rate": DELETE, "wl.inter_arrival_time_dist_config":
                                                       {"type": "Constant", "value": 0.2}}),
    "burst_size": (SHARED_STREAM, {"wl.request_rate": DELETE, "wl.burst_size": 10}),
    "burst_interval_s": ({**OWN_STREAMS_OFF, "wl.burst_size": 5}, {"wl.burst_interval_s": 1.0}),
    "think_time_dist_config": ({"prof.conversational_probability": 0.6},
                               {"wl.think_time_dist_config": {"type": "Constant", "value": 0.05}}),
}

PROFILE_CASES = {
    "profile_name": ({}, {"prof.profile_name": "q"}),
    "weight": ({**SHARED_STREAM, "wl.client_profiles.1": {
                    **{k: v for k, v in PROFILE.items() if k != "request_rate"}, "profile_name": "long",
                    "prompt_tokens_dist_config": {"type": "Constant", "value": 2000}}},
               {"prof.weight": 4.0}),
    "inter_arrival_time_dist_config": ({}, {"prof.request_rate": DELETE, "prof.inter_arrival_time_dist_config":
                                            {"type": "Constant", "value": 0.2}}),
    "request_rate": ({}, {"prof.request_rate": 20.0}),
    "prompt_tokens_dist_config": ({}, {"prof.prompt_tokens_dist_config": {"type": "Constant", "value": 50}}),
    "max_output_tokens_dist_config": ({}, {"prof.max_output_tokens_dist_config":
                                           {"type": "Constant", "value": 5}}),
    "output_tokens_dist_config": ({}, {"prof.output_tokens_dist_config": {"type": "Constant", "value": 3}}),
    "conversational_probability": ({}, {"prof.conversational_probability": 0.6}),
    "max_turns": (CONVERSATION, {"prof.max_turns": 2}),
    "think_time_dist_config": (CONVERSATION, {"prof.think_time_dist_config":
                                              {"type": "Constant", "value": 0.05}}),
    "follow_up_prompt_tokens_dist_config": (CONVERSATION, {"prof.follow_up_prompt_tokens_dist_config":
                                                           {"type": "Constant", "value": 5}}),
    "streaming_response_probability": ({}, {"prof.streaming_response_probability": 0.0}),
    "system_prompt_tokens": ({}, {"prof.system_prompt_tokens": 500}),
    "num_system_prompts": (SHARED_PREFIX, {"prof.num_system_prompts": 8}),
}

TRACE_CASES = {
    **WORKLOAD_CASES,
    "total_duration": ({}, {"wl.total_duration": 1.0}),
    "path": ({}, {"wl.path": "builtin:splitwise_code"}),
    "time_unit": ({}, {"wl.time_unit": "ms"}),
    "time_scale": ({}, {"wl.time_scale": 0.3}),
    "start_s": ({}, {"wl.start_s": 30.0}),
    "end_s": ({}, {"wl.end_s": 10.0}),
    "columns": ({"wl.path": "TRACE_CSV"}, {"wl.columns": {"prompt_tokens": "input_tokens"}}),
    "max_requests": ({}, {"wl.max_requests": 5}),
    "repeat": ({}, {"wl.repeat": 2}),
    "streaming_response_probability": ({}, {"wl.streaming_response_probability": 0.0}),
}

KERNEL_CASES = {
    "simulation.max_simulation_time": ({}, {"simulation.max_simulation_time": 1.0}),
    "simulation.random_seed": ({}, {"simulation.random_seed": 7}),
    "metrics_config.percentiles_to_calculate": ({}, {"metrics_config.percentiles_to_calculate": [0.9]}),
    "metrics_config.warm_up_duration_s": ({}, {"metrics_config.warm_up_duration_s": 1.0}),
    "metrics_config.slo": ({}, {"metrics_config.slo": {"ttft_ms": 20}}),
    "metrics_config.slo.ttft_ms": ({"metrics_config.slo": {"ttft_ms": 1000}},
                                   {"metrics_config.slo.ttft_ms": 20}),
    "metrics_config.slo.tpot_ms": ({"metrics_config.slo": {"tpot_ms": 1000}},
                                   {"metrics_config.slo.tpot_ms": 7.2}),
    "metrics_config.slo.e2e_ms": ({"metrics_config.slo": {"e2e_ms": 10000}},
                                  {"metrics_config.slo.e2e_ms": 300}),
    "hardware_profile.device": ({}, {"hw.device": "A100-SXM4-80GB"}),
    "hardware_profile.topology": ({"fw.tensor_parallel_size": 2},
                                  {"hw.topology": {"type": "custom", "device": "H100-SXM",
                                                   "gpus_per_node": 8, "intra": "pcie"}}),
    "hardware_profile.compute_devices": ({}, {"hw.device": DELETE, "hw.compute_devices": [
        {"device_id": "gpu0", "device_type": "GPU", "peak_tflops": {"bf16": 300},
         "memory_capacity_bytes": 80e9, "memory_gbps": 1000}]}),
    "hardware_profile.network_links": ({}, {"hw.network_links": [LINK]}),
    "hardware_profile.network_links[].bandwidth_bps": ({"hw.network_links": [LINK]},
                                                       {"link.bandwidth_bps": 1e5}),
    "hardware_profile.network_links[].latency_s": ({"hw.network_links": [LINK]}, {"link.latency_s": 0.1}),
    "hardware_profile.network_links[].dest_id": (    # two frameworks, a fast link and a slow one
        {"frameworks_to_test.1": {"name": "g", "type": "vllm", "config": {"model": "Llama-3.1-8B"}},
         "hw.network_links": [{**LINK, "dest_id": "f"}, {**LINK, "link_id": "slow", "dest_id": "g",
                                                         "latency_s": 0.3}]},
        {"link.dest_id": "g", "hardware_profile.network_links.1.dest_id": "f"}),
    "frameworks_to_test[].is_target_for_workload": ({}, {"frameworks_to_test.0.is_target_for_workload": False}),
    "model_characteristics_db_path": ({"fw.model": "Llama-3-8B"},
                                      {"model_characteristics_db_path": "MODELS_DB"}),
}

#: a GPU written out in the file (seed 001's way), its datasheet matching no catalog GPU
INLINE_GPU = {"hw.device": DELETE, "hw.compute_devices": [
    {"device_id": "gpu0", "device_type": "GPU", "peak_tflops": {"bf16": 400, "fp8": 800},
     "memory_capacity_bytes": 80e9, "memory_gbps": 2500, "processing_units": 100, "nvlink_gbps": 300,
     "host_link_gbps": 32, "tdp_w": 500, "price_per_hour": 2.0}]}

DEVICE_CASES = {
    "device_type": (INLINE_GPU, {"dev.device_type": "H100-SXM"}),
    "preset": (INLINE_GPU, {"dev.preset": "A100-SXM4-80GB"}),
    "profile": (INLINE_GPU, {"dev.profile": "GPU_PROFILE"}),
    "name": (INLINE_GPU, {"dev.name": "my-gpu"}),
    "arch": ({**INLINE_GPU, "dev.profile": "GPU_PROFILE", "dev.arch": "ampere"}, {"dev.arch": "hopper"}),
    "peak_tflops": (INLINE_GPU, {"dev.peak_tflops": {"bf16": 100, "fp8": 200}}),
    "memory_capacity_bytes": (INLINE_GPU, {"dev.memory_capacity_bytes": 60e9}),
    "memory_gbps": (INLINE_GPU, {"dev.memory_gbps": 1000}),
    "processing_units": (INLINE_GPU, {"dev.processing_units": 20}),
    "nvlink_gbps": ({**INLINE_GPU, "fw.tensor_parallel_size": 2}, {"dev.nvlink_gbps": 20}),
    "price_per_hour": (INLINE_GPU, {"dev.price_per_hour": 9.0}),
    "cost_params": (INLINE_GPU, {"dev.cost_params": {"gemm_compute_eff": 0.5}}),
}


#: topology keys: (the topology block, the change, (collective, ranks)) — a topology prices the
#: collectives between GPUs, so each is checked on the collective its key shapes, through the cost
#: oracle (labsim.collective_time); a serving run's small all-reduces leave most of them alike
ONE_NODE = {"type": "custom", "device": "H100-SXM", "gpus_per_node": 8, "nodes": 1}
ON_PCIE = {**ONE_NODE, "intra": "pcie"}
NODES = {"type": "custom", "device": "H100-SXM", "gpus_per_node": 8, "nodes": 4, "nic": "ib-ndr",
         "nics_per_node": 2, "nodes_per_leaf": 1, "oversubscription": 4}
TOPOLOGY_CASES = {
    "device": (ONE_NODE, {"device": "A100-SXM4-80GB"}, ("all_reduce", 8)),
    "gpus_per_node": ({**ONE_NODE, "nodes": 2, "nic": "ib-ndr", "nics_per_node": 1}, {"gpus_per_node": 4},
                      ("all_reduce", 8)),
    "intra": (ONE_NODE, {"intra": "pcie"}, ("all_reduce", 8)),
    "nvlink_bw_GBps": (ONE_NODE, {"nvlink_bw_GBps": 50}, ("all_reduce", 8)),
    "nvls": (ONE_NODE, {"nvls": True}, ("all_reduce", 8)),
    "pcie": (ON_PCIE, {"pcie": "gen3"}, ("all_reduce", 8)),
    "pcie_switch_gpus": (ON_PCIE, {"pcie_switch_gpus": 2}, ("all_to_all", 8)),
    "sockets": ({**ON_PCIE, "pcie_switch_gpus": 2}, {"sockets": 4}, ("all_to_all", 8)),
    "nic": (NODES, {"nic": "roce-100"}, ("all_reduce", 32)),
    "nics_per_node": (NODES, {"nics_per_node": 8}, ("all_reduce", 32)),
    "fabric": (NODES, {"fabric": "fat-tree"}, ("send_recv", [0, 8])),
    "nodes_per_leaf": (NODES, {"nodes_per_leaf": 4}, ("send_recv", [0, 8])),
    "oversubscription": (NODES, {"oversubscription": 1}, ("send_recv", [0, 8])),
    "ib_sharp": ({**NODES, "nvls": True}, {"ib_sharp": True}, ("all_reduce", 32)),
    "degraded_links": (NODES, {"degraded_links": {"n1.nic0": 0.1}}, ("all_reduce", 32)),
}


#: distribution keys: name → (a block, {key: a block with the key set differently}); a block is
#: sampled directly (the workloads draw every length and gap from one)
DIST_CASES = {
    "Constant": ({"type": "Constant", "value": 3.4}, {"value": {"value": 5}}),
    "Empirical": ({"type": "Empirical", "values": [1, 2, 3]}, {
        "values": {"values": [4, 5]},
        "path": {"values": None, "path": "TRACE_CSV", "column": "output_tokens"},
        "column": {"values": None, "path": "TRACE_CSV", "column": "input_tokens"}}),
    "Exponential": ({"type": "Exponential", "rate": 2.0}, {"rate": {"rate": 4.0},
                                                          "mean": {"rate": None, "mean": 2.0}}),
    "Gamma": ({"type": "Gamma", "shape": 2.0, "scale": 1.0}, {
        "shape": {"shape": 3.0}, "scale": {"scale": 2.0},
        "mean": {"shape": None, "scale": None, "mean": 5.0, "cv": 1.0},
        "cv": {"shape": None, "scale": None, "mean": 2.0, "cv": 0.3}}),
    "LogNormal": ({"type": "LogNormal", "mean": 100, "sigma": 50}, {
        "mean": {"mean": 200}, "sigma": {"sigma": 10},
        "log_mean": {"mean": None, "sigma": None, "log_mean": 3.0, "log_sigma": 0.5},
        "log_sigma": {"mean": None, "sigma": None, "log_mean": 4.0, "log_sigma": 0.1},
        "is_int": {"is_int": True}, "min": {"min": 120}, "max": {"max": 80}}),
    "Normal": ({"type": "Normal", "mean": 10, "sigma": 2}, {"mean": {"mean": 20}, "sigma": {"sigma": 5}}),
    "Poisson": ({"type": "Poisson", "lam": 4.0}, {"lam": {"lam": 9.0}, "mean": {"lam": None, "mean": 9.0}}),
    "Uniform": ({"type": "Uniform", "low": 1, "high": 2}, {"low": {"low": 0}, "high": {"high": 5}}),
}


#: keys that must leave every result identical (checked for equality): key → why, and the doc
SAME = {
    "vllm.fast_forward": ({}, {"fw.fast_forward": False},
                          "vllm config fast_forward: 'identical results; false steps one iteration per event'"),
    "vllm.model_profile_id": ({}, {"fw.model": DELETE, "fw.model_profile_id": "Llama-3.1-8B"},
                              "vllm config model: 'Alias of model_profile_id.'"),
    "trtllm.model_profile_id": ({}, {"fw.model": DELETE, "fw.model_profile_id": "Llama-3.1-8B"},
                                "trtllm config model: 'Alias of model_profile_id.'"),
}

#: keys that change no measured figure here: key → (the doc that says why: a path to a schema
#: description in the composed schema, a phrase it holds). The output keys choose the files
#: written instead (test_output_settings_choose_the_files_written).
NO_EFFECT_HERE = {
    "experiment.name": ("properties.name", "label"),
    "experiment.description": ("properties.description", "not used by the run"),
    "frameworks_to_test[].name": ("properties.frameworks_to_test.items.properties.name", "label"),
    "frameworks_to_test[].type": ("properties.frameworks_to_test.items.properties.type", "registered framework"),
    "frameworks_to_test[].placement": ("properties.frameworks_to_test.items.properties.placement",
                                       "shared with the others placed there"),   # alone: the same GPUs
    "metrics_config.output_dir": ("properties.metrics_config.properties.output_dir", "Folder for the outputs"),
    "metrics_config.output_summary_json_path": (
        "properties.metrics_config.properties.output_summary_json_path", "Where to write summary.json"),
    "metrics_config.output_requests_csv_path": (
        "properties.metrics_config.properties.output_requests_csv_path", "Where to write the per-request CSV"),
    "metrics_config.sinks": ("properties.metrics_config.properties.sinks", "metric sinks to write with"),
    "metrics_config.sql": ("properties.metrics_config.properties.sql", "Where the sql metric sink writes"),
    "hardware_profile.compute_devices[].device_id": (
        "properties.hardware_profile.properties.compute_devices.items.properties.device_id", "a label otherwise"),
    "hardware_profile.compute_devices[].host_link_gbps": (
        "$defs.device.allOf.0.then.properties.host_link_gbps", "results do not use it"),
    "hardware_profile.compute_devices[].tdp_w": ("$defs.device.allOf.0.then.properties.tdp_w", "no result uses it"),
    "hardware_profile.topology.type": ("$defs.topology.properties.type", "a registered topology"),
    "hardware_profile.topology.name": ("$defs.topology.allOf.0.then.properties.name", "a label"),
    "hardware_profile.topology.nodes": ("$defs.topology.allOf.0.then.properties.nodes", "refused"),
    "hardware_profile.sharing": ("properties.hardware_profile.properties.sharing", "exclusive use by default"),
    "hardware_profile.network_links[].link_id": (
        "properties.hardware_profile.properties.network_links.items.properties.link_id", "a label"),
    "hardware_profile.network_links[].source_id": (
        "properties.hardware_profile.properties.network_links.items.properties.source_id", "a label"),
    "client_profiles.type": ("$defs.workload.properties.type", "registered workload"),
    "trace.type": ("$defs.workload.properties.type", "registered workload"),
}


def all_cases() -> dict:
    """key → (kind of baseline, regime edits, change edits)."""
    out = {}
    for fw in FRAMEWORKS:
        schema_keys = set(framework_properties(fw))
        cases = {**serving_cases(fw), **ENGINE_CASES[fw]}
        for key, (regime, change) in cases.items():
            if key in schema_keys:
                out[f"{fw}.{key}"] = (fw, regime, change)
    for key, (regime, change) in CLIENT_PROFILES_CASES.items():
        out[f"client_profiles.{key}"] = ("client_profiles", regime, change)
    for key, (regime, change) in PROFILE_CASES.items():
        out[f"client_profiles.client_profiles[].{key}"] = ("client_profiles", regime, change)
    for key, (regime, change) in TRACE_CASES.items():
        out[f"trace.{key}"] = ("trace", regime, change)
    for key, (regime, change) in KERNEL_CASES.items():
        out[key] = ("kernel", regime, change)
    for key, (regime, change) in DEVICE_CASES.items():
        out[f"hardware_profile.compute_devices[].{key}"] = ("kernel", regime, change)
    return out


# -- the walk over the schema ---------------------------------------------------------------


@functools.cache
def schema() -> dict:
    return compose_experiment_schema(labsim.get_registry())


def _branch(kind: str, name: str) -> dict:
    """The ``then`` schema of component *name* in ``$defs/<kind>``."""
    for branch in schema()["$defs"][kind]["allOf"]:
        pattern = branch["if"].get("properties", {}).get(branch["if"].get("required", [""])[0], {})
        if "pattern" in pattern and re.match(pattern["pattern"], name):
            return branch["then"]
    raise AssertionError(f"no {kind} {name!r} in the composed schema")


def framework_properties(fw: str) -> dict:
    return _branch("framework", fw)["properties"]["config"]["properties"]


#: keys whose value is a section walked key by key (each of its keys is listed instead)
SECTIONS = {"experiment.simulation", "experiment.hardware_profile", "experiment.metrics_config",
            "experiment.workload", "experiment.frameworks_to_test", "frameworks_to_test[].config",
            "client_profiles.client_profiles"}


def documented_keys() -> set[str]:
    """Every key the composed schema documents in the parts this test covers."""
    props = schema()["properties"]
    keys = {f"experiment.{k}" for k in props if k != "model_characteristics_db_path"}
    if "model_characteristics_db_path" in props:
        keys.add("model_characteristics_db_path")
    for section in ("simulation", "metrics_config", "hardware_profile"):
        keys |= {f"{section}.{k}" for k in props[section]["properties"]}
    keys |= {f"metrics_config.slo.{k}" for k in props["metrics_config"]["properties"]["slo"]["properties"]}
    links = props["hardware_profile"]["properties"]["network_links"]["items"]["properties"]
    keys |= {f"hardware_profile.network_links[].{k}" for k in links}
    keys |= {f"frameworks_to_test[].{k}" for k in props["frameworks_to_test"]["items"]["properties"]}
    for fw in FRAMEWORKS:
        keys |= {f"{fw}.{k}" for k in framework_properties(fw)}
    for wl in WORKLOADS:
        wl_props = _branch("workload", wl)["properties"]
        keys |= {f"{wl}.{k}" for k in wl_props}
        if wl == "client_profiles":
            keys |= {f"{wl}.client_profiles[].{k}" for k in wl_props["client_profiles"]["items"]["properties"]}
    keys |= {f"hardware_profile.compute_devices[].{k}" for k in _branch("device", "GPU")["properties"]}
    keys |= {f"hardware_profile.topology.{k}" for k in _branch("topology", "custom")["properties"]}
    return keys - SECTIONS


def test_every_documented_key_is_accounted_for_once():
    cases = all_cases()
    listed = [*cases, *SAME, *NO_EFFECT_HERE, *(f"hardware_profile.topology.{k}" for k in TOPOLOGY_CASES)]
    assert len(listed) == len(set(listed)), "a key is listed twice"
    documented = documented_keys()
    missing = sorted(documented - set(listed))
    assert not missing, f"documented keys no test sets: {missing}"
    stale = sorted(set(listed) - documented)
    assert not stale, f"keys tested here that the schema no longer documents: {stale}"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Files some cases name: a model database and a trace with two prompt-length columns."""
    folder = tmp_path_factory.mktemp("keys")
    models = folder / "models.json"
    models.write_text(json.dumps({"models": [{
        "id": "Llama-3-8B", "num_layers": 16, "hidden_size": 4096, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
        "max_position_embeddings": 8192, "dtype": "bfloat16"}]}))
    trace = folder / "trace.csv"
    trace.write_text("arrived_at,prompt_tokens,input_tokens,output_tokens\n"
                     + "".join(f"{i * 0.1:.1f},{100 + i},{900 + 7 * i},{20 + i}\n" for i in range(20)))
    profile = (Path(__file__).resolve().parents[1] / "plugins" / "gpus" / "src" / "labsim_gpus" / "data"
               / "profiles" / "a100_sxm4_80gb.json")
    return {"MODELS_DB": str(models), "TRACE_CSV": str(trace), "GPU_PROFILE": str(profile)}


def prepare(cfg: dict, files: dict) -> dict:
    """*cfg* with the placeholders of :func:`files` replaced by the files' paths."""
    text = json.dumps(cfg)
    for placeholder, path in files.items():
        text = text.replace(f'"{placeholder}"', json.dumps(path))
    return json.loads(text)


@pytest.mark.parametrize("key", sorted(all_cases()))
def test_setting_changes_outputs(key, files):
    kind, regime, change = all_cases()[key]
    baseline = prepare(apply(base(kind), regime), files)
    variant = prepare(apply(baseline, change), files)
    assert variant != baseline, f"{key}: the case changes nothing in the file"
    assert run(variant) != run(baseline), f"{key} validates and changes no result"


@pytest.mark.parametrize("key", sorted(TOPOLOGY_CASES))
def test_topology_setting_changes_a_collective(key):
    topology, change, (collective, ranks) = TOPOLOGY_CASES[key]
    assert {**topology, **change} != topology

    def seconds(topo):
        return labsim.collective_time(collective, 1 << 30, ranks=ranks, topology=topo)

    assert seconds({**topology, **change}) != seconds(topology), f"topology {key} changes no collective"


def distribution_keys() -> set[str]:
    keys = set()
    for name in labsim.get_registry().names("distributions"):
        keys |= {f"{name}.{k}" for k in _branch("distribution", name)["properties"] if k != "type"}
    return keys


def test_every_distribution_key_is_tested():
    cases = {f"{name}.{key}" for name, (_block, changes) in DIST_CASES.items() for key in changes}
    common = {"is_int", "min", "max"}      # every distribution's; tested on LogNormal
    documented = {k for k in distribution_keys() if k.split(".", 1)[1] not in common or k.startswith("LogNormal.")}
    assert documented == cases


@pytest.mark.parametrize("name, key", [(n, k) for n, (_b, ch) in DIST_CASES.items() for k in ch])
def test_distribution_setting_changes_the_samples(name, key, files):
    import numpy as np

    block, changes = DIST_CASES[name]
    variant = {k: v for k, v in {**block, **changes[key]}.items() if v is not None}
    cls = labsim.get_registry().get("distributions", name)

    def samples(config):
        dist = cls(prepare(config, files), np.random.default_rng(5))
        if hasattr(dist, "prepare"):
            dist.prepare(Path.cwd())
        return np.asarray(dist.sample_n(200), dtype=float).tolist()

    assert samples(variant) != samples(block), f"{name}.{key} changes no sample"


@pytest.mark.parametrize("key", sorted(SAME))
def test_setting_that_must_not_change_outputs(key):
    regime, change, _why = SAME[key]
    kind = key.split(".")[0]
    baseline = apply(base(kind), regime)
    assert same_figures(baseline) == same_figures(apply(baseline, change))


def same_figures(cfg: dict) -> dict:
    """The summary's figures to 9 significant digits (sums may differ in the last bit) and the
    per-request table; per-step rows are left out (fast-forward writes a run of unchanged
    decode steps as one row, ``num_steps``)."""
    result = labsim.run(cfg)
    summary = json.loads(measured(result))["summary"]

    def rounded(node):
        if isinstance(node, dict):
            return {k: rounded(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rounded(v) for v in node]
        return float(f"{node:.9g}") if isinstance(node, float) else node

    return {"summary": rounded(summary), "requests": result.table("requests")}


@pytest.mark.parametrize("key", sorted(NO_EFFECT_HERE))
def test_reason_is_in_the_docs(key):
    where, phrase = NO_EFFECT_HERE[key]
    node = schema()
    for part in where.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert phrase.lower() in node.get("description", "").lower(), (
        f"{key}: the description at {where} should say {phrase!r}")


def test_a_response_not_streamed_reaches_the_client_whole():
    """streaming_response_probability 0: each answer comes in one response when generation ends —
    TTFT is E2E, and the whole answer (not one token) crosses the client link."""
    link = {**LINK, "bandwidth_bps": 1e5}    # 2 bytes a token: 0.16 ms a token
    streamed = apply(base("vllm"), {"hw.network_links": [link]})
    whole = apply(streamed, {"prof.streaming_response_probability": 0.0})
    a, b = labsim.run(streamed).table("requests"), labsim.run(whole).table("requests")
    assert [r["request_id"] for r in a] == [r["request_id"] for r in b] and len(a) > 10
    for s, w in zip(a, b):
        assert w["ttft_ms"] == w["e2e_ms"] and w["tpot_ms"] == 0
        assert s["ttft_ms"] < s["e2e_ms"]
        per_token_ms = 2 * 8 / link["bandwidth_bps"] * 1e3
        assert w["e2e_ms"] - s["e2e_ms"] == pytest.approx((s["output_tokens"] - 1) * per_token_ms)


def test_a_streamed_answer_cut_off_by_the_end_reached_the_client_but_a_whole_one_did_not():
    """A non-streaming request still running when the run stops has shown its client nothing."""
    cut = {"simulation.max_simulation_time": 1.0, "prof.request_rate": 60.0}
    streamed = apply(base("vllm"), cut)
    whole = apply(streamed, {"prof.streaming_response_probability": 0.0})
    s = [r for r in labsim.run(streamed).table("requests") if r["status"] == "unfinished"]
    w = [r for r in labsim.run(whole).table("requests") if r["status"] == "unfinished"]
    assert any(r["first_token_s"] == r["first_token_s"] for r in s)       # some streamed a token
    assert w and all(r["first_token_s"] != r["first_token_s"] for r in w)  # NaN: nothing arrived


@pytest.mark.parametrize("links, says", [
    ([LINK, {**LINK, "latency_s": 0.5}], "is also link 0's"),
    ([LINK, {**LINK, "link_id": "other", "dest_id": "entry2"}], "all lead to no framework"),
    ([{**LINK, "dest_id": "f"}, {**LINK, "link_id": "spare"}], "would carry nothing"),
])
def test_a_network_link_that_would_go_unused_is_refused(links, says):
    from labsim.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        labsim.run(apply(base("vllm"), {"hw.network_links": links}))


@pytest.mark.parametrize("edits, written", [
    ({"metrics_config.output_summary_json_path": "a/s.json", "metrics_config.output_requests_csv_path": "a/r.csv"},
     {"a": ["r.csv", "s.json", "steps.csv"]}),
    ({"metrics_config.output_dir": "b"}, {"b": ["requests.csv", "steps.csv", "summary.json"]}),
    ({"metrics_config.output_dir": "b", "metrics_config.sinks": ["summary_json"]}, {"b": ["summary.json"]}),
    ({"metrics_config.output_dir": "b", "fw.record_steps": False}, {"b": ["requests.csv", "summary.json"]}),
])
def test_output_settings_choose_the_files_written(tmp_path, edits, written):
    """The keys NO_EFFECT_HERE lists as 'where the outputs go' (and record_steps) change the files."""
    from labsim.orchestrator import Orchestrator, load_experiment

    edits = {k: (str(tmp_path / v) if k.endswith(("_path", "_dir")) else v) for k, v in edits.items()}
    Orchestrator(load_experiment(apply(base("vllm"), {"wl.total_duration": 0.5, **edits}))).run(None)
    for folder, names in written.items():
        assert sorted(p.name for p in (tmp_path / folder).iterdir() if not p.name.startswith(".")) == names


def test_a_topology_device_that_hardware_profile_device_would_override_is_refused():
    """hardware_profile.device populates the topology; a different topology device was ignored."""
    from labsim.errors import ConfigError

    cfg = apply(base("vllm"), {"hw.topology": {**ONE_NODE, "device": "A100-SXM4-80GB"}})
    with pytest.raises(ConfigError, match="topology's device 'A100-SXM4-80GB' is not hardware_profile.device"):
        labsim.run(cfg)
    labsim.run(apply(cfg, {"hw.topology.device": "H100-SXM"}))   # the same device, or none, is fine

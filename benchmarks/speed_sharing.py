"""Wall time of simulating a day of eight tenants on one shared GPU (labsim-sharing).

Seed 002's mix on one A100-80GB: two chat servers (vLLM, Llama-3.1-8B, 0.25 new requests/s
each, day-long), two training jobs (BERT-base fine-tuning, ResNet-50) and four interactive
notebooks (bursts of five cells, 30 s of thinking on average), under one sharing mode. Target:
24 simulated hours in < 30 s.

    python benchmarks/speed_sharing.py [--hours 24] [--mode mps]

Prints what was simulated on stdout; the wall time, CPU time and peak memory on stderr (they
depend on the machine).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import labsim


def experiment(hours: float, mode: str) -> dict:
    seconds = hours * 3600.0
    chat = {"model": "Llama-3.1-8B", "gpu_memory_utilization": 0.25, "max_model_len": 4096}
    tenants = [
        {"name": f"chat-{k}", "type": "vllm", "placement": {"gpu": "gpu0", "mig_profile": "2g.20gb"},
         "config": dict(chat)} for k in (1, 2)]
    tenants += [
        {"name": "bert-finetune", "type": "ddp", "is_target_for_workload": False,
         "placement": {"gpu": "gpu0", "mig_profile": "1g.10gb"},
         "config": {"micro_batch_size": 32,
                    "job": {"model": "BERT-base", "seq_len": 128, "global_batch_size": 32,
                            "iterations": int(seconds / 0.2)}}},
        {"name": "resnet50", "type": "ddp", "is_target_for_workload": False,
         "placement": {"gpu": "gpu0", "mig_profile": "1g.10gb"},
         "config": {"micro_batch_size": 64,
                    "job": {"model": "ResNet-50", "global_batch_size": 64, "iterations": int(seconds / 0.2)}}},
    ]
    tenants += [
        {"name": f"notebook-{k}", "type": "notebook", "is_target_for_workload": False,
         "placement": {"gpu": "gpu0", "mig_profile": "1g.5gb"},
         "config": {"model": "BERT-base", "cell": "forward", "batch_size": 16, "seq_len": 256,
                    "think_time_dist_config": {"type": "Exponential", "mean": 30.0}, "session_s": seconds}}
        for k in (1, 2, 3, 4)]
    return {
        "name": "eight-tenants-one-a100",
        "simulation": {"max_simulation_time": seconds * 1.5, "random_seed": 1},
        "hardware_profile": {"device": "A100-SXM4-80GB", "sharing": {"type": mode}},
        "workload": {"type": "client_profiles", "total_duration": seconds, "client_profiles": [{
            "profile_name": "chat", "weight": 1.0, "request_rate": 0.25,
            "prompt_tokens_dist_config": {"type": "LogNormal", "mean": 600, "sigma": 400, "is_int": True,
                                          "min": 8, "max": 3000},
            "max_output_tokens_dist_config": {"type": "LogNormal", "mean": 250, "sigma": 150, "is_int": True,
                                              "min": 8, "max": 1000}}]},
        "frameworks_to_test": tenants,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--mode", default="mps")
    args = parser.parse_args(argv)
    began, cpu = time.perf_counter(), time.process_time()
    result = labsim.run(experiment(args.hours, args.mode))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    fws = result.summary["frameworks"]
    served = []
    for name, fw in fws.items():
        if isinstance(fw.get("requests"), dict):
            served.append(f"{name} {fw['requests']['finished']:,} requests")
        elif "cells" in fw:
            served.append(f"{name} {fw['cells']:,} cells")
        else:
            served.append(f"{name} {fw.get('iterations', 0):,} iterations")
    print(f"{args.hours:g} simulated hours, 8 tenants on one A100-80GB under {args.mode}: " + "; ".join(served))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall {wall:.1f} s (target < 30 s for 24 h), CPU {cpu:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

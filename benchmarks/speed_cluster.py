"""Wall time of simulating a month-scale cluster: 100,000 jobs on 2,000 GPUs (labsim-cluster).

Generated jobs (Poisson arrivals, 140 an hour, so 100,000 span a month; 1, 2, 4 or 8 GPUs;
log-normal durations around four hours: ~60 % load) on 250 nodes of 8 GPUs, under one policy. Target: < 60 s with memory flat in the number
of finished jobs (the jobs table streams to disk; the summary keeps one row of numbers per job).

    python benchmarks/speed_cluster.py [--jobs 100000] [--policy fifo] [--failures]

``--failures`` turns on every failure kind at its default rate (Meta's Llama 3 figures: GPU
faults, software, node outages, leaf partitions) with a 2-hour repair per failed node.
``--kinds`` makes 5 % of the jobs Llama-3.1-8B services (1 or 2 replicas on vLLM) and 30 %
notebook sessions on a quarter of a GPU, a third of the one-GPU training jobs fractional too,
under time-slicing.

Prints what was simulated on stdout; wall time, CPU time and peak memory on stderr.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import labsim


def experiment(jobs: int, policy: str, failures: bool = False, kinds: bool = False) -> dict:
    exp = {
        "name": "month-on-2000-gpus",
        "simulation": {"max_simulation_time": 1e12, "random_seed": 1},
        "hardware_profile": {"topology": {"type": "dgx-a100", "nodes": 250}},
        "workload": {"type": "jobs", "generate": {
            "jobs": jobs, "rate_per_hour": 140,
            "num_gpus": {"1": 0.7, "2": 0.1, "4": 0.1, "8": 0.1},
            "duration_s_dist_config": {"type": "LogNormal", "mean": 14400, "sigma": 21600, "min": 60},
            "users": [f"u{k}" for k in range(40)]}},
        "frameworks_to_test": [{"name": policy, "type": "cluster", "config": {
            "scheduler": {"type": policy}, **({"failures": {"node_repair_h": 2}} if failures else {})}}],
    }
    if kinds:
        workload = exp["workload"]
        workload["generate"].update(
            kinds={"training": 0.65, "inference": 0.05, "interactive": 0.3}, replicas={"1": 0.5, "2": 0.5},
            service_duration_s_dist_config={"type": "LogNormal", "mean": 86400, "sigma": 43200, "min": 3600},
            fractional={"share": {"gpu_fraction": 0.25}, "interactive": 1.0, "training": 0.33})
        workload["services"] = {"chat": {"engine": "vllm", "config": {"model": "Llama-3.1-8B"}}}
        workload["interactive"] = {"model": "GPT-2-Medium", "batch_size": 8, "seq_len": 1024}
        exp["frameworks_to_test"][0]["config"]["sharing"] = {"mode": "time_slicing"}
    return exp


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--policy", default="fifo")
    parser.add_argument("--failures", action="store_true", help="Every failure kind at its default rate.")
    parser.add_argument("--kinds", action="store_true",
                        help="Services and notebook sessions among the jobs, fractional GPUs under time-slicing.")
    args = parser.parse_args(argv)
    began, cpu = time.perf_counter(), time.process_time()
    summary = labsim.run(experiment(args.jobs, args.policy, args.failures, args.kinds)).summary["frameworks"][
        args.policy]
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(f"{args.jobs:,} jobs on 2,000 GPUs under {args.policy}: {summary['jobs']['finished']:,} finished, "
          f"makespan {summary['makespan_h']:,.0f} h, utilisation {summary['gpu_utilisation']:.2f}, "
          f"JCT mean {summary['jct_h']['mean']:.2f} h"
          + (f", {summary['jobs']['interruptions']:,} failed runs" if args.failures else ""))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall {wall:.1f} s (target < 60 s), CPU {cpu:.1f} s, peak {peak:.0f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulation speed of the vLLM model: wall time, simulated requests per wall second, peak memory.

One replica of Llama-3.1-8B on an H100-SXM, 1024 prompt / 256 output tokens,
Poisson arrivals at 16 requests/s, for 20,000, 100,000 and 1,000,000 requests
(each size in a fresh process, writing requests.csv and summary.json to a
temporary folder, one core). Targets: 100,000 requests in under 12 s; 1,000,000
in under 2 minutes and 500 MB.

    python benchmarks/speed_serving.py [--sizes 20000,100000] [--no-fast-forward] [--framework trtllm]

``--framework trtllm`` runs the same workload on the TensorRT-LLM model (default settings),
which has no fast path: its scheduler walks every active request each step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def experiment(n: int, fast_forward: bool, framework: str = "vllm") -> dict:
    return {
        "name": f"speed-{n}", "simulation": {"max_simulation_time": 1e9, "random_seed": 1},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "client_profiles", "num_requests": n, "client_profiles": [{
            "profile_name": "fixed", "request_rate": 16.0,
            "prompt_tokens_dist_config": {"type": "Constant", "value": 1024, "is_int": True},
            "max_output_tokens_dist_config": {"type": "Constant", "value": 256, "is_int": True}}]},
        "frameworks_to_test": [{"name": "vllm", "type": "vllm", "config": {
            "model": "Llama-3.1-8B", "fast_forward": fast_forward, "record_steps": False}}] if framework == "vllm"
        else [{"name": framework, "type": framework, "config": {"model": "Llama-3.1-8B", "record_steps": False}}],
        "metrics_config": {"sinks": ["summary_json", "csv"]},
    }


def child(n: int, fast_forward: bool, framework: str) -> None:
    from pathlib import Path

    from labsim.orchestrator import Orchestrator, load_experiment

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        orch = Orchestrator(load_experiment(experiment(n, fast_forward, framework)))
        result = orch.run(Path(out))
    wall = time.perf_counter() - started
    s = result.summary["frameworks"][framework]
    print(json.dumps({"n": n, "wall_s": wall, "finished": s["requests"]["finished"],
                      "simulated_s": result.summary["simulated_time_s"],
                      "steps": s["gpu"]["steps"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--no-fast-forward", action="store_true")
    ap.add_argument("--framework", choices=["vllm", "trtllm"], default="vllm")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ff = not args.no_fast_forward
    if args.child:
        child(args.child, ff, args.framework)
        return 0
    print(f"{'requests':>10} {'wall s':>8} {'sim req/wall s':>15} {'peak MB':>8} {'steps':>10} "
          f"{'simulated s':>12}")
    for n in (int(x) for x in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--framework", args.framework]
        cmd += ["--no-fast-forward"] if not ff else []
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ,
                             "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        total = time.perf_counter() - started
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{n:>10} {total:>8.1f} {r['finished'] / total:>15.0f} {r['peak_rss_mb']:>8.0f} "
              f"{r['steps']:>10} {r['simulated_s']:>12.0f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

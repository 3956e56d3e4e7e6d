"""How fast the LLM workload generates requests: 1,000,000 Poisson arrivals into a trivial server.

Prints wall time, requests per second of wall time and peak memory of the
workload alone (a stand-in framework that finishes each request after a fixed
simulated delay, so the serving engine's own cost is not included). The full
speed target (1M requests through a serving engine in < 2 min, < 500 MB) is
checked by the engine benchmarks; this isolates the workload's share.

    python benchmarks/llm_workload_speed.py [--requests N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "llm" / "tests"))

import labsim_llm.plugin  # noqa: E402
import llm_fake_server  # noqa: E402
from labsim.orchestrator import Orchestrator, load_experiment  # noqa: E402
from labsim.testing import make_registry  # noqa: E402


def experiment(n: int, conversational: float) -> dict:
    return {
        "name": "workload-speed",
        "simulation": {"max_simulation_time": 10 * n, "random_seed": 1},
        "workload": {
            "num_requests": n,
            "request_rate": 16.0,
            "client_profiles": [
                {
                    "profile_name": "bench",
                    "prompt_tokens_dist_config": {"type": "Constant", "value": 1024},
                    "max_output_tokens_dist_config": {"type": "Constant", "value": 256},
                    "conversational_probability": conversational,
                }
            ],
        },
        # 256 output tokens at ~10 ms per token: the server holds ~40 requests at 16 req/s
        "frameworks_to_test": [
            {
                "name": "fake",
                "type": "fake_server",
                "is_target_for_workload": True,
                "config": {"delay_s": 2.56},
            }
        ],
    }


class CountingServer(llm_fake_server.FakeServer):
    """The fake server without its list of every request (that list would be the memory)."""

    name = "fake_server"

    def submit(self, request):
        self.seen_count = getattr(self, "seen_count", 0) + 1
        super().submit(request)
        self.seen.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--conversational", type=float, default=0.0)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report Python's peak heap (slows the run about 2x)",
    )
    args = parser.parse_args()

    class Plugin:
        @labsim_llm.plugin.hookimpl
        def register_frameworks(register):
            register(CountingServer)

    registry = make_registry(labsim_llm.plugin, Plugin)
    orchestrator = Orchestrator(
        load_experiment(experiment(args.requests, args.conversational)), registry
    )
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    result = orchestrator.run(None, write_files=False)
    wall = time.perf_counter() - started
    if args.tracemalloc:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    sent = result.summary["workload"]["requests_sent"]
    print(f"requests sent:           {sent:,}")
    print(f"simulated time:          {result.summary['simulated_time_s']:,.0f} s")
    print(f"wall time:               {wall:.1f} s  ({sent / wall:,.0f} requests/s)")
    if args.tracemalloc:
        print(f"peak traced heap:        {peak / 2**20:.1f} MiB")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of the process:  {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()

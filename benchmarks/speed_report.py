"""Wall time of ``labsim report`` on a large serving run (labsim-report).

Simulates Llama-3.1-8B on one H100 under vLLM (1,024-token prompts, 256-token outputs, Poisson
16 requests/s) until ``--requests`` have arrived, writing its outputs, then times the report
alone. Target: a 100,000-request run's report in < 10 s.

    python benchmarks/speed_report.py [--requests 100000]

Prints what was reported on stdout; the run's and the report's wall times on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import labsim
from click.testing import CliRunner
from labsim.cli import cli


def experiment(requests: int) -> dict:
    rate = 16.0
    return {
        "name": "report-speed", "simulation": {"max_simulation_time": requests / rate * 4, "random_seed": 3},
        "hardware_profile": {"device": "H100-SXM"},
        "workload": {"type": "client_profiles", "total_duration": requests / rate, "client_profiles": [{
            "profile_name": "p", "weight": 1.0, "request_rate": rate,
            "prompt_tokens_dist_config": {"type": "Constant", "value": 1024},
            "max_output_tokens_dist_config": {"type": "Constant", "value": 256}}]},
        "frameworks_to_test": [{"name": "vllm", "type": "vllm", "config": {"model": "Llama-3.1-8B"}}],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        began = time.perf_counter()
        labsim.run(experiment(args.requests), out=out)
        ran = time.perf_counter() - began
        began = time.perf_counter()
        result = CliRunner().invoke(cli, ["report", str(out)])
        took = time.perf_counter() - began
        if result.exit_code != 0:
            print(result.output, file=sys.stderr)
            return 1
        rows = sum(1 for _ in open(out / "requests.csv")) - 1
        size = (out / "report.html").stat().st_size
        print(f"report of {rows:,} requests: {size / 1024:.0f} KiB, "
              f"{(out / 'report.html').read_text().count('<svg')} plots")
    print(f"run {ran:.1f} s; report {took:.1f} s (target < 10 s at 100,000 requests)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``benchmarks/speed_sweep.py``: the overhead per run, and with ``--parallel`` a sweep on the
default workers measured against the same runs one after another."""

from __future__ import annotations

import re
import subprocess
import sys


def test_parallel_measures_a_sweep_on_the_default_workers(root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "speed_sweep.py"), "--points", "2", "--sim-s", "1",
         "--parallel", "2", "--parallel-sim-s", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.match(r"2 runs of 1 simulated s: [\d.]+ ms each simulating alone", lines[0])
    assert lines[1].startswith("local sweep, 1 worker: ")
    measured = [line for line in lines if line.startswith("2 runs of 2 simulated s")]
    assert len(measured) == 1
    found = re.search(r"swept on (\d+) workers? \(([\d.]+)x\); measured 1,000 runs of 1 s: ([\d.]+) min",
                      measured[0])
    assert found, measured[0]
    assert int(found.group(1)) >= 1 and float(found.group(2)) > 0 and float(found.group(3)) > 0

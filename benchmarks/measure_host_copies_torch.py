"""Measure host-to-device and device-to-host copies on a CUDA GPU with PyTorch.

The measurement is ``labsim measure --parts host`` (``labsim_gpus.measure``, where what is
measured is described); this script runs that file where only PyTorch is installed, as it
made ``benchmarks/data/h200_torch/host_copy_h200_torch.csv``::

    python benchmarks/measure_host_copies_torch.py --out DIR [--label h200_torch]

It writes ``DIR/host_copy_<label>.csv`` (direction, host_memory, bytes, latency_ms, gb_s) and
``DIR/env_<label>.txt``. Why: the cost model prices a copy over the host link (KV-cache swap
and offload, weights loaded from host memory) as ``latency + bytes / (host_link_eff × link
bandwidth)``; ``labsim calibrate`` fits both to these rows.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

MEASURE = Path(__file__).resolve().parents[1] / "plugins" / "gpus" / "src" / "labsim_gpus" / "measure.py"

if __name__ == "__main__":
    sys.argv[1:] = [*sys.argv[1:], "--parts", "host"]
    runpy.run_path(str(MEASURE), run_name="__main__")

"""Measure GEMMs, attention and copies on a CUDA GPU with PyTorch, in the calibration-table layout.

The measurement itself is ``labsim measure`` (``labsim_gpus.measure``, where what is measured
is described); this script runs that file where only PyTorch is installed, as it made the
tables in ``benchmarks/data/h100_torch`` and ``h200_torch``::

    python benchmarks/measure_kernels_torch.py --out DIR [--label h100_sxm]

It writes ``DIR/gemm_<label>.csv``, ``attn_<label>.csv``, ``gemm_graph_<label>.csv`` and
``copy_<label>.csv``, and ``DIR/env_<label>.txt`` (GPU, driver, library versions).
``--parts gemm,attn,graph,copy`` picks the tables (default: all); ``--quick`` a few shapes.
"""

from __future__ import annotations

import runpy
from pathlib import Path

MEASURE = Path(__file__).resolve().parents[1] / "plugins" / "gpus" / "src" / "labsim_gpus" / "measure.py"

if __name__ == "__main__":
    runpy.run_path(str(MEASURE), run_name="__main__")

"""How a GPU's GEMM throughput depends on the operands' values (random against zeros), with PyTorch.

Run on a machine with a GPU and PyTorch (not part of the test suite)::

    python benchmarks/measure_gemm_operands_torch.py --out DIR [--label h100_sxm]

Tensor cores draw more power when the operand bits toggle (random data) than on zeros or
constants; under the board's power limit the clocks, and so the throughput, drop. Real
weights and activations are random-like, so kernel tables measured on ``torch.empty`` /
zero-filled tensors overstate compute-bound GEMMs. For each shape this times
``torch.nn.functional.linear`` on random normal data, on zeros, on ``torch.empty`` and on
ones, in rotating order after a two-second warm-up, as the median of
``triton.testing.do_bench`` (L2 flushed before each call). Writes
``DIR/gemm_operands_<label>.csv``.

``--dtype fp8`` times ``torch._scaled_mm`` on float8_e4m3fn operands (per-tensor scales,
bf16 output) instead, as FP8 serving runs its linear layers; ``empty`` is then left out
(uninitialised memory is not a valid fp8 pattern to compare).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

SHAPES = [(2048, 6144, 4096), (4096, 8192, 8192), (8192, 4096, 4096), (8192, 28672, 4096),
          (16384, 8192, 8192), (4096, 14336, 8192)]
KINDS = ["random", "zeros", "empty", "ones"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    ap.add_argument("--dtype", choices=["bf16", "fp8"], default="bf16")
    args = ap.parse_args(argv)

    import time

    import torch
    import torch.nn.functional as F
    from triton.testing import do_bench

    dev, bf16 = "cuda", torch.bfloat16
    make = {"random": lambda *s: torch.randn(*s, device=dev, dtype=bf16),
            "zeros": lambda *s: torch.zeros(*s, device=dev, dtype=bf16),
            "empty": lambda *s: torch.empty(*s, device=dev, dtype=bf16),
            "ones": lambda *s: torch.ones(*s, device=dev, dtype=bf16)}
    kinds = KINDS
    if args.dtype == "fp8":
        fp8 = torch.float8_e4m3fn
        make = {kind: (lambda *s, f=f: f(*s).to(fp8)) for kind, f in make.items() if kind != "empty"}
        kinds = [k for k in KINDS if k != "empty"]
        one = torch.ones((), device=dev, dtype=torch.float32)

        def gemm(x, w):
            return torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=bf16)
    else:
        gemm = F.linear
    warm = torch.randn(8192, 8192, device=dev, dtype=bf16)
    end = time.time() + 2.0
    while time.time() < end:                      # leave the cold-start boost behind
        F.linear(warm, warm)
    torch.cuda.synchronize()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.dtype == "bf16" else f"_{args.dtype}"
    with open(args.out / f"gemm_operands{suffix}_{args.label}.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["gpu", "dtype", "m", "n", "k", "operands", "latency_ms", "tflops", "src"])
        src = (f"labsim benchmarks/measure_gemm_operands_torch.py, torch {torch.__version__}, "
               f"{torch.cuda.get_device_name()}")
        for i, (m, n, k) in enumerate(SHAPES):
            r = i % len(kinds)
            for kind in kinds[r:] + kinds[:r]:
                x, w = make[kind](m, k), make[kind](n, k)
                ms = float(do_bench(lambda x=x, w=w: gemm(x, w), warmup=25, rep=200, return_mode="median"))
                tflops = 2 * m * n * k / ms / 1e9
                out.writerow([args.label, args.dtype, m, n, k, kind, f"{ms:.6g}", f"{tflops:.1f}", src])
                print(f"{args.dtype} {m:6d} {n:6d} {k:6d} {kind:7s} {tflops:6.0f} TFLOP/s", flush=True)
                del x, w
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure host-to-device and device-to-host copies on a CUDA GPU with PyTorch.

Run on a machine with a GPU and PyTorch (not part of the test suite)::

    python benchmarks/measure_host_copies_torch.py --out DIR [--label h200_torch]

Why: the cost model prices a copy over the host link (KV-cache swap and offload, weights
loaded from host memory) as ``latency + bytes / (host_link_eff × link bandwidth)``, with
``host_link_eff`` and ``host_copy_latency_s`` assumed. This measures both.

What is measured: ``Tensor.copy_(non_blocking=True)`` between a pinned (page-locked) host
tensor and a device tensor, and from pageable host memory, in both directions, 4 KiB to
1 GiB; each figure is the median of 10 timed copies (CUDA events) after 2 warm-ups. Writes
``DIR/host_copy_<label>.csv`` (direction, host_memory, bytes, latency_ms, gb_s) and
``DIR/env_host_copy_<label>.txt``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    args = ap.parse_args(argv)

    import torch

    dev = torch.device("cuda")

    def timed(copy) -> float:
        for _ in range(2):
            copy()
        torch.cuda.synchronize()
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            copy()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"env_host_copy_{args.label}.txt").write_text(
        f"gpu: {torch.cuda.get_device_name()}\ntorch: {torch.__version__}\ncuda: {torch.version.cuda}\n")
    src = f"labsim benchmarks/measure_host_copies_torch.py, torch {torch.__version__}, {torch.cuda.get_device_name()}"
    with open(args.out / f"host_copy_{args.label}.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["gpu", "direction", "host_memory", "bytes", "latency_ms", "gb_s", "src"])
        for pinned in (True, False):
            for n in SIZES:
                host = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
                host.fill_(7)
                gpu = torch.empty(n, dtype=torch.uint8, device=dev)
                for direction, copy in (("h2d", lambda g=gpu, h=host: g.copy_(h, non_blocking=True)),
                                        ("d2h", lambda g=gpu, h=host: h.copy_(g, non_blocking=True))):
                    ms = timed(copy)
                    gbs = n / (ms * 1e-3) / 1e9
                    kind = "pinned" if pinned else "pageable"
                    out.writerow([args.label, direction, kind, n, f"{ms:.6g}", f"{gbs:.6g}", src])
                    print(f"{direction} {kind:8s} {n:>11d} B {ms * 1e3:10.1f} us {gbs:7.2f} GB/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

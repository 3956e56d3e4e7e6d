"""Measure GEMMs, attention and copies on a CUDA GPU with PyTorch, in the calibration-table layout.

Run on a machine with a GPU and PyTorch (not part of the test suite)::

    python benchmarks/measure_kernels_torch.py --out DIR [--label h100_sxm]

It writes ``DIR/gemm_<label>.csv`` and ``DIR/attn_<label>.csv`` in the layout
``labsim_gpus.calibrate.load_points`` reads (so ``benchmarks/fidelity_kernels.py``
and ``labsim calibrate`` can use them), plus ``DIR/copy_<label>.csv`` (device-to-device
copies) and ``DIR/env_<label>.txt`` (GPU, driver, library versions).

What is measured, all bf16, each the median of ``triton.testing.do_bench`` (CUDA events;
the L2 cache flushed before every call, so weights come from HBM as in serving):

* GEMMs ``x[m, k] @ w[n, k]ᵀ`` (``torch.nn.functional.linear``) for the projection
  shapes of Llama-3.1-8B (TP 1) and Llama-3.1-70B (TP 4), the LM head, and a square
  8192 GEMM, for m from 1 to 16384 tokens;
* prefill attention, causal, batch 1–4, 128–8192 tokens, with the cuDNN and the
  FlashAttention(-2) backends of ``scaled_dot_product_attention``;
* decode attention, one query token per sequence against a contiguous KV cache,
  batch 1–128 and contexts of 512–8192 tokens (no paging: a floor for paged kernels);
* device-to-device copies of 16 MiB to 2 GiB.
"""

from __future__ import annotations

import argparse
import csv
import platform
from pathlib import Path

#: (name, n, k): Llama-3.1-8B at TP 1, Llama-3.1-70B at TP 4 (per-GPU shards), LM head, square
GEMM_SHAPES = [
    ("llama8b.qkv", 6144, 4096), ("llama8b.o", 4096, 4096), ("llama8b.gate_up", 28672, 4096),
    ("llama8b.down", 4096, 14336), ("llama8b.lm_head", 128256, 4096),
    ("llama70b_tp4.qkv", 2560, 8192), ("llama70b_tp4.o", 8192, 2048),
    ("llama70b_tp4.gate_up", 14336, 8192), ("llama70b_tp4.down", 8192, 7168),
    ("square", 8192, 8192),
]
GEMM_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
#: (num_heads, num_kv_heads): Llama-3.1-8B, Llama-3.1-70B at TP 4, multi-head
HEADS = [(32, 8), (16, 2), (32, 32)]
PREFILL = [(1, 128), (1, 512), (1, 1024), (1, 2048), (1, 4096), (1, 8192), (4, 512), (4, 2048)]
DECODE = [(b, c) for b in (1, 8, 32, 128) for c in (512, 2048, 8192)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    ap.add_argument("--quick", action="store_true", help="a few shapes only (a smoke test)")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    version = f"torch {torch.__version__}"
    src = f"labsim benchmarks/measure_kernels_torch.py on {props.name}"
    (out / f"env_{args.label}.txt").write_text(
        f"gpu: {props.name}\nsms: {props.multi_processor_count}\nmemory_bytes: {props.total_memory}\n"
        f"torch: {torch.__version__}\ncuda: {torch.version.cuda}\ncudnn: {torch.backends.cudnn.version()}\n"
        f"python: {platform.python_version()}\n")

    def bench(fn) -> float:
        """Median milliseconds of *fn* (cache flushed before each call)."""
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

    bf16 = torch.bfloat16
    shapes = GEMM_SHAPES[:2] if args.quick else GEMM_SHAPES
    ms_list = [1, 64, 4096] if args.quick else GEMM_M
    with open(out / f"gemm_{args.label}.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["gpu", "framework", "version", "kernel_source", "dtype", "m", "n", "k", "latency_ms",
                    "tflops", "src", "shape"])
        for name, n, k in shapes:
            weight = torch.randn(n, k, device=dev, dtype=bf16)
            for m in ms_list:
                x = torch.randn(m, k, device=dev, dtype=bf16)
                ms = bench(lambda x=x, weight=weight: F.linear(x, weight))
                w.writerow([args.label, "torch", version, "torch.nn.functional.linear", "bfloat16", m, n, k,
                            f"{ms:.6g}", f"{2 * m * n * k / ms / 1e9:.2f}", src, name])
                print(f"gemm {name:22s} m={m:6d} {ms * 1e3:10.2f} us {2 * m * n * k / ms / 1e9:8.1f} TFLOP/s",
                      flush=True)
            del weight
            torch.cuda.empty_cache()

    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash2": SDPBackend.FLASH_ATTENTION}
    with open(out / f"attn_{args.label}.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["gpu", "framework", "version", "kernel_source", "phase", "batch_size", "isl", "step",
                    "seq_len", "num_heads", "num_key_value_heads", "head_dim", "attn_dtype", "kv_cache_dtype",
                    "latency_ms", "src"])
        d = 128
        for heads, kvh in (HEADS[:1] if args.quick else HEADS):
            for label, backend in backends.items():
                for b, s in (PREFILL[:2] if args.quick else PREFILL):
                    q = torch.randn(b, heads, s, d, device=dev, dtype=bf16)
                    kk = torch.randn(b, kvh, s, d, device=dev, dtype=bf16)
                    vv = torch.randn(b, kvh, s, d, device=dev, dtype=bf16)

                    def run(q=q, kk=kk, vv=vv, backend=backend, gqa=kvh != heads):
                        with sdpa_kernel([backend]):
                            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)
                    try:
                        run()
                        ms = bench(run)
                    except RuntimeError as exc:
                        print(f"prefill {label} h={heads}/{kvh} b={b} s={s}: not run ({str(exc)[:80]})")
                        continue
                    w.writerow([args.label, "torch", version, f"sdpa_{label}", "context", b, s, 0, s, heads, kvh, d,
                                "bfloat16", "bfloat16", f"{ms:.6g}", src])
                    print(f"prefill {label:6s} h={heads}/{kvh} b={b} s={s:5d} {ms * 1e3:10.2f} us", flush=True)
                for b, c in (DECODE[:2] if args.quick else DECODE):
                    q = torch.randn(b, heads, 1, d, device=dev, dtype=bf16)
                    kk = torch.randn(b, kvh, c, d, device=dev, dtype=bf16)
                    vv = torch.randn(b, kvh, c, d, device=dev, dtype=bf16)

                    def run(q=q, kk=kk, vv=vv, backend=backend, gqa=kvh != heads):
                        with sdpa_kernel([backend]):
                            return F.scaled_dot_product_attention(q, kk, vv, enable_gqa=gqa)
                    try:
                        run()
                        ms = bench(run)
                    except RuntimeError as exc:
                        print(f"decode {label} h={heads}/{kvh} b={b} c={c}: not run ({str(exc)[:80]})")
                        continue
                    w.writerow([args.label, "torch", version, f"sdpa_{label}", "generation", b, c - 1, 1, c, heads,
                                kvh, d, "bfloat16", "bfloat16", f"{ms:.6g}", src])
                    kv_gb = 2 * b * kvh * c * d * 2 / 1e9
                    print(f"decode  {label:6s} h={heads}/{kvh} b={b:3d} c={c:5d} {ms * 1e3:10.2f} us "
                          f"{kv_gb / ms * 1e3:7.0f} GB/s of KV", flush=True)
                    del q, kk, vv
                torch.cuda.empty_cache()

    with open(out / f"copy_{args.label}.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["gpu", "bytes", "latency_ms", "gbps_read_plus_write", "src"])
        for mib in ([64] if args.quick else [16, 64, 256, 1024, 2048]):
            a = torch.empty(mib << 20, device=dev, dtype=torch.uint8)
            b = torch.empty_like(a)
            ms = bench(lambda a=a, b=b: b.copy_(a))
            gbps = 2 * (mib << 20) / ms / 1e6
            w.writerow([args.label, mib << 20, f"{ms:.6g}", f"{gbps:.1f}", src])
            print(f"copy {mib:5d} MiB {ms * 1e3:10.1f} us {gbps:8.0f} GB/s (read + write)", flush=True)
            del a, b
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

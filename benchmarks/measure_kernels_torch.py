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
* device-to-device copies of 16 MiB to 2 GiB;
* the GEMM shapes again for m ≤ 256, 24 calls back to back on distinct weights (more
  than the L2 holds) replayed from one CUDA graph, timed per call: how a decode step runs
  them (``DIR/gemm_graph_<label>.csv``, the GEMM layout).

``--parts gemm,attn,graph,copy`` picks the tables (default: all).
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


GEMM_COLUMNS = ["gpu", "framework", "version", "kernel_source", "dtype", "m", "n", "k", "latency_ms", "tflops",
                "src", "shape"]
ATTN_COLUMNS = ["gpu", "framework", "version", "kernel_source", "phase", "batch_size", "isl", "step", "seq_len",
                "num_heads", "num_key_value_heads", "head_dim", "attn_dtype", "kv_cache_dtype", "latency_ms", "src"]


class Bench:
    """What every table needs: torch, the device, the label and source, a timer."""

    def __init__(self, label: str, quick: bool):
        import torch
        import torch.nn.functional as F
        from triton.testing import do_bench

        self.torch, self.F, self._do_bench = torch, F, do_bench
        self.dev, self.bf16 = torch.device("cuda"), torch.bfloat16
        self.label, self.quick = label, quick
        self.version = f"torch {torch.__version__}"
        self.src = f"labsim benchmarks/measure_kernels_torch.py on {torch.cuda.get_device_name()}"

    def time(self, fn) -> float:
        """Median milliseconds of *fn* (L2 flushed before each call)."""
        return float(self._do_bench(fn, warmup=25, rep=100, return_mode="median"))

    def randn(self, *shape):
        return self.torch.randn(*shape, device=self.dev, dtype=self.bf16)

    def shapes(self):
        return GEMM_SHAPES[:2] if self.quick else GEMM_SHAPES

    def ms(self):
        return [1, 64, 4096] if self.quick else GEMM_M


def write_env(b: Bench, out: Path) -> None:
    torch = b.torch
    props = torch.cuda.get_device_properties(b.dev)
    (out / f"env_{b.label}.txt").write_text(
        f"gpu: {props.name}\nsms: {props.multi_processor_count}\nmemory_bytes: {props.total_memory}\n"
        f"torch: {torch.__version__}\ncuda: {torch.version.cuda}\ncudnn: {torch.backends.cudnn.version()}\n"
        f"python: {platform.python_version()}\n")


def gemm_table(b: Bench, w) -> None:
    w.writerow(GEMM_COLUMNS)
    for name, n, k in b.shapes():
        weight = b.randn(n, k)
        for m in b.ms():
            x = b.randn(m, k)
            ms = b.time(lambda x=x, weight=weight: b.F.linear(x, weight))
            w.writerow([b.label, "torch", b.version, "torch.nn.functional.linear", "bfloat16", m, n, k,
                        f"{ms:.6g}", f"{2 * m * n * k / ms / 1e9:.2f}", b.src, name])
            print(f"gemm {name:22s} m={m:6d} {ms * 1e3:10.2f} us {2 * m * n * k / ms / 1e9:8.1f} TFLOP/s", flush=True)
        del weight
        b.torch.cuda.empty_cache()


def graph_table(b: Bench, w, chain: int = 24) -> None:
    torch, F = b.torch, b.F
    w.writerow(GEMM_COLUMNS)
    for name, n, k in b.shapes():
        if n * k * 2 * chain > 8 << 30:
            continue
        weights = [b.randn(n, k) for _ in range(chain)]
        for m in [m for m in b.ms() if m <= 256]:
            x = b.randn(m, k)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for wt in weights:
                    F.linear(x, wt)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for wt in weights:
                    F.linear(x, wt)
            ms = b.time(graph.replay) / chain
            w.writerow([b.label, "torch", b.version, "torch.nn.functional.linear (CUDA graph, back to back)",
                        "bfloat16", m, n, k, f"{ms:.6g}", f"{2 * m * n * k / ms / 1e9:.2f}", b.src, name])
            print(f"graph gemm {name:22s} m={m:6d} {ms * 1e3:10.2f} us per call", flush=True)
            del graph
        del weights
        torch.cuda.empty_cache()


def attn_table(b: Bench, w) -> None:
    F = b.F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    w.writerow(ATTN_COLUMNS)
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash2": SDPBackend.FLASH_ATTENTION}
    d = 128
    for heads, kvh in (HEADS[:1] if b.quick else HEADS):
        for label, backend in backends.items():
            cases = [("context", bs, s, s) for bs, s in (PREFILL[:2] if b.quick else PREFILL)]
            cases += [("generation", bs, 1, c) for bs, c in (DECODE[:2] if b.quick else DECODE)]
            for phase, bs, q_len, kv_len in cases:
                q, kk, vv = b.randn(bs, heads, q_len, d), b.randn(bs, kvh, kv_len, d), b.randn(bs, kvh, kv_len, d)

                def run(q=q, kk=kk, vv=vv, backend=backend, causal=phase == "context", gqa=kvh != heads):
                    with sdpa_kernel([backend]):
                        return F.scaled_dot_product_attention(q, kk, vv, is_causal=causal, enable_gqa=gqa)
                try:
                    run()
                    ms = b.time(run)
                except RuntimeError as exc:
                    print(f"{phase} {label} h={heads}/{kvh} b={bs} len={kv_len}: not run ({str(exc)[:80]})")
                    continue
                isl, step = (kv_len, 0) if phase == "context" else (kv_len - 1, 1)
                w.writerow([b.label, "torch", b.version, f"sdpa_{label}", phase, bs, isl, step, kv_len, heads, kvh,
                            d, "bfloat16", "bfloat16", f"{ms:.6g}", b.src])
                print(f"{phase:10s} {label:6s} h={heads}/{kvh} b={bs:3d} len={kv_len:5d} {ms * 1e3:10.2f} us",
                      flush=True)
                del q, kk, vv
            b.torch.cuda.empty_cache()


def copy_table(b: Bench, w) -> None:
    torch = b.torch
    w.writerow(["gpu", "bytes", "latency_ms", "gbps_read_plus_write", "src"])
    for mib in ([64] if b.quick else [16, 64, 256, 1024, 2048]):
        x = torch.empty(mib << 20, device=b.dev, dtype=torch.uint8)
        y = torch.empty_like(x)
        ms = b.time(lambda x=x, y=y: y.copy_(x))
        gbps = 2 * (mib << 20) / ms / 1e6
        w.writerow([b.label, mib << 20, f"{ms:.6g}", f"{gbps:.1f}", b.src])
        print(f"copy {mib:5d} MiB {ms * 1e3:10.1f} us {gbps:8.0f} GB/s (read + write)", flush=True)
        del x, y


TABLES = {"gemm": gemm_table, "attn": attn_table, "graph": graph_table, "copy": copy_table}
FILES = {"gemm": "gemm", "attn": "attn", "graph": "gemm_graph", "copy": "copy"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    ap.add_argument("--quick", action="store_true", help="a few shapes only (a smoke test)")
    ap.add_argument("--parts", default=",".join(TABLES), help="tables to measure (default: all)")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(TABLES))
    if unknown:
        ap.error(f"--parts: unknown {', '.join(unknown)}; known: {', '.join(TABLES)}")
    b = Bench(args.label, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    write_env(b, args.out)
    for part in parts:
        with open(args.out / f"{FILES[part]}_{args.label}.csv", "w", newline="") as handle:
            TABLES[part](b, csv.writer(handle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

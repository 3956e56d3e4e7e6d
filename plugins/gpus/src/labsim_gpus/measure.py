"""Measure a GPU's kernels with PyTorch, in the tables ``labsim calibrate`` fits a profile to.

The way to a calibrated profile of your own GPU::

    pip install 'labsim-gpus[measure]'             # PyTorch, on the machine with the GPU
    labsim measure --out my_gpu                     # a few minutes; writes my_gpu/*.csv
    labsim calibrate --device H100-SXM --data my_gpu --output my_gpu.json
    # in an experiment: compute_devices: [{device_id: g0, preset: H100-SXM, profile: my_gpu.json}]

(``--device`` names the catalog GPU, or a ``compute_devices`` entry, the tables were measured
on: its datasheet figures are what the efficiencies are fractions of.)

What is measured, all bf16 on random-valued operands (real weights and activations run
compute-bound GEMMs slower than zeros do: ``gemm_operand_derate``), each figure the median
of timed calls with CUDA events, the L2 cache flushed before every call so that weights come
from DRAM as in serving:

* ``gemm``: ``x[m, k] @ w[n, k]ᵀ`` (``torch.nn.functional.linear``) for the projection shapes
  of Llama-3.1-8B (TP 1) and Llama-3.1-70B (TP 4), the LM head and a square 8192 GEMM, m
  from 1 to 16384 tokens;
* ``attn``: prefill attention (causal, batch 1-4, 128-8192 tokens) and decode attention (one
  query per sequence over a contiguous KV cache, batch 1-128, 512-8192 tokens of context)
  through ``scaled_dot_product_attention`` with its cuDNN and FlashAttention backends;
* ``graph``: the GEMM shapes again for m ≤ 256, 24 calls back to back on distinct weights
  replayed from one CUDA graph, timed per call (how a decode step runs them);
* ``copy``: device-to-device copies of 16 MiB to 2 GiB;
* ``host``: copies between host and device memory over the host link (PCIe), both directions,
  pinned and pageable host memory, 4 KiB to 1 GiB.

``labsim calibrate`` fits the fraction of DRAM bandwidth streaming work reaches to the device
copies, and the host link's efficiency and latency to the pinned host copies.

Each table is written whole or not at all (a temporary file renamed when done). This file
needs only PyTorch and the standard library: run as a script (``python
benchmarks/measure_kernels_torch.py --out DIR`` from a checkout), it also measures where
labsim's other dependencies are not installed.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
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

#: the parts ``labsim measure --parts`` takes, and the file each writes (``<file>_<label>.csv``)
PARTS = {"gemm": "gemm", "attn": "attn", "graph": "gemm_graph", "copy": "copy", "host": "host_copy"}
HOST_COPY_COLUMNS = ["gpu", "direction", "host_memory", "bytes", "latency_ms", "gb_s", "src"]
HOST_COPY_SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30]
#: bytes written before every timed call to flush the L2 cache (larger than any GPU's L2)
FLUSH_BYTES = 256 << 20


class MeasureError(Exception):
    """Why the GPU cannot be measured here (no PyTorch, no CUDA device)."""


class Bench:
    """What every table needs: torch, the device, the label and source, and a timer.

    :param quick: a few shapes of each table only (a smoke test of the whole way).
    """

    def __init__(self, label: str, quick: bool = False, log=print):
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            raise MeasureError("measuring needs PyTorch on the machine with the GPU: "
                               "pip install 'labsim-gpus[measure]'") from None
        if not torch.cuda.is_available():
            raise MeasureError("PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                               "run labsim measure on the machine with the GPU")
        self.torch, self.F = torch, F
        self.dev, self.bf16 = torch.device("cuda"), torch.bfloat16
        self.label, self.quick, self.log = label, quick, log
        self.name = torch.cuda.get_device_name()
        self.version = f"torch {torch.__version__}"
        self.src = f"labsim measure on {self.name}"
        self._flush = torch.empty(FLUSH_BYTES, dtype=torch.int8, device=self.dev)

    def time(self, fn, warmup_s: float = 0.025, rep_s: float = 0.1) -> float:
        """Median milliseconds of *fn*, the L2 flushed before each call: as many calls as fit
        in *rep_s* (5 to 100) after *warmup_s* of warm-up."""
        torch = self.torch
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(3):
            self._flush.zero_()
            fn()
        end.record()
        torch.cuda.synchronize()
        estimate = max(start.elapsed_time(end) / 3 * 1e-3, 1e-6)
        for _ in range(max(1, int(warmup_s / estimate))):
            fn()
        reps = max(5, min(100, int(rep_s / estimate)))
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            self._flush.zero_()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        return float(statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)))

    def randn(self, *shape):
        return self.torch.randn(*shape, device=self.dev, dtype=self.bf16)

    def shapes(self):
        return GEMM_SHAPES[:2] if self.quick else GEMM_SHAPES

    def ms(self):
        return [1, 64, 4096] if self.quick else GEMM_M

    def env(self) -> str:
        """The GPU and library versions, one ``key: value`` a line."""
        torch = self.torch
        props = torch.cuda.get_device_properties(self.dev)
        return (f"gpu: {props.name}\nsms: {props.multi_processor_count}\nmemory_bytes: {props.total_memory}\n"
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
            b.log(f"gemm {name:22s} m={m:6d} {ms * 1e3:10.2f} us {2 * m * n * k / ms / 1e9:8.1f} TFLOP/s")
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
            b.log(f"graph gemm {name:22s} m={m:6d} {ms * 1e3:10.2f} us per call")
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
                    b.log(f"{phase} {label} h={heads}/{kvh} b={bs} len={kv_len}: not run ({str(exc)[:80]})")
                    continue
                isl, step = (kv_len, 0) if phase == "context" else (kv_len - 1, 1)
                w.writerow([b.label, "torch", b.version, f"sdpa_{label}", phase, bs, isl, step, kv_len, heads, kvh,
                            d, "bfloat16", "bfloat16", f"{ms:.6g}", b.src])
                b.log(f"{phase:10s} {label:6s} h={heads}/{kvh} b={bs:3d} len={kv_len:5d} {ms * 1e3:10.2f} us")
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
        b.log(f"copy {mib:5d} MiB {ms * 1e3:10.1f} us {gbps:8.0f} GB/s (read + write)")
        del x, y


def host_table(b: Bench, w) -> None:
    torch = b.torch
    w.writerow(HOST_COPY_COLUMNS)
    for pinned in (True, False):
        kind = "pinned" if pinned else "pageable"
        for n in ([1 << 20] if b.quick else HOST_COPY_SIZES):
            host = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
            host.fill_(7)
            gpu = torch.empty(n, dtype=torch.uint8, device=b.dev)
            for direction, copy in (("h2d", lambda g=gpu, h=host: g.copy_(h, non_blocking=True)),
                                    ("d2h", lambda g=gpu, h=host: h.copy_(g, non_blocking=True))):
                ms = b.time(copy)
                gbs = n / (ms * 1e-3) / 1e9
                w.writerow([b.label, direction, kind, n, f"{ms:.6g}", f"{gbs:.6g}", b.src])
                b.log(f"{direction} {kind:8s} {n:>11d} B {ms * 1e3:10.1f} us {gbs:7.2f} GB/s")


TABLES = {"gemm": gemm_table, "attn": attn_table, "graph": graph_table, "copy": copy_table, "host": host_table}


def default_label(gpu_name: str) -> str:
    """A file-name label from a GPU's name: ``NVIDIA H100 80GB HBM3`` → ``h100_80gb_hbm3``."""
    words = gpu_name.lower().replace("nvidia", " ").replace("-", " ").split()
    return "_".join("".join(c for c in w if c.isalnum()) for w in words) or "gpu"


def _write_atomically(path: Path, fill) -> None:
    """Write *path* by ``fill(csv_writer)`` into a temporary file renamed when done."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "w", newline="") as handle:
            fill(csv.writer(handle))
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def measure(out: Path, label: str | None = None, parts=tuple(PARTS), quick: bool = False,
            log=print, bench: Bench | None = None) -> list[Path]:
    """Measure *parts* on this machine's GPU into *out*; the paths written (the tables and
    ``env_<label>.txt``). *bench* replaces the PyTorch bench (tests)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise MeasureError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    b = bench or Bench(label or "gpu", quick, log)
    if label is None:
        b.label = default_label(b.name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    env = out / f"env_{b.label}.txt"
    env.write_text(b.env())
    written.append(env)
    for part in parts:
        path = out / f"{PARTS[part]}_{b.label}.csv"
        _write_atomically(path, lambda w, part=part: TABLES[part](b, w))
        written.append(path)
    return written


def main(argv=None) -> int:
    """``--out DIR [--label L] [--parts gemm,attn] [--quick]``: the command line of this file run as a
    script (and of ``benchmarks/measure_kernels_torch.py``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default=None, help="file-name label (default: from the GPU's name)")
    ap.add_argument("--quick", action="store_true", help="a few shapes only (a smoke test)")
    ap.add_argument("--parts", default=",".join(PARTS), help="tables to measure (default: all)")
    args = ap.parse_args(argv)
    try:
        written = measure(args.out, args.label, [p for p in args.parts.split(",") if p], args.quick,
                          log=lambda line: print(line, flush=True))
    except MeasureError as ex:
        ap.exit(2, f"error: {ex}\n")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

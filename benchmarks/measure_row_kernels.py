"""Measure the small per-token kernels of a decode step on a CUDA GPU, with CuPy.

Run on a machine with a GPU and CuPy (not part of the test suite)::

    python benchmarks/measure_row_kernels.py --out DIR [--label h200]

Why: between its GEMMs, a serving engine's decoder layer runs kernels that give each token
(row) one CTA: the fused residual-add + RMSNorm, SiLU-and-multiply. At decode batch sizes
they have fewer CTAs than the GPU has SMs, so their time is set by one CTA's chain of
dependent steps, not by DRAM bandwidth. These are our own kernels built to the launch shape
vLLM's ``csrc/layernorm_kernels.cu`` and ``csrc/activation_kernels.cu`` use (a block of
``min(width, 1024)`` threads per token; the fused norm reads 8-wide vectors, reduces the
sum of squares across the block, then normalises in a second pass over the residual); they
are not vLLM's code. Also measured: an empty kernel (what one launch costs inside a CUDA
graph) and DRAM latency (a pointer chase over 512 MiB, one thread).

Each kernel is launched 64 times back to back and replayed from one CUDA graph, as a decode
step runs; a figure is the median over 20 replays divided by 64 (CUDA events). The rows'
data stays in L2 between launches, as a decode step's activations do. Writes
``DIR/row_kernels_<label>.csv`` (kernel, width, rows, value, unit).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

SOURCE = r"""
extern "C" {
__device__ __forceinline__ float bf_lo(unsigned v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf_hi(unsigned v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ unsigned bf_round(float f) {     // round to nearest even, high half
    unsigned u = __float_as_uint(f);
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}
__device__ __forceinline__ unsigned bf_pack(float lo, float hi) { return (bf_round(lo) >> 16) | bf_round(hi); }

__global__ void empty_kernel() {}

// out = rmsnorm(x + residual) * w; residual <- x + residual (bf16, 8 per uint4).
// blockDim = min(width / 8, 1024)
__global__ void fused_add_rms_norm(const uint4* __restrict__ x, uint4* __restrict__ residual,
                                   const uint4* __restrict__ w, uint4* __restrict__ out, int width) {
    const int vecs = width / 8;
    const long long row = blockIdx.x;
    float sq = 0.f;
    for (int i = threadIdx.x; i < vecs; i += blockDim.x) {
        uint4 a = x[row * vecs + i], r = residual[row * vecs + i];
        unsigned* pa = reinterpret_cast<unsigned*>(&a);
        unsigned* pr = reinterpret_cast<unsigned*>(&r);
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            float lo = bf_lo(pa[j]) + bf_lo(pr[j]), hi = bf_hi(pa[j]) + bf_hi(pr[j]);
            sq += lo * lo + hi * hi;
            pr[j] = bf_pack(lo, hi);
        }
        residual[row * vecs + i] = r;
    }
    __shared__ float warp_sums[32];
    __shared__ float scale;
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sq;
    __syncthreads();
    if (threadIdx.x < 32) {
        float s = threadIdx.x < (blockDim.x + 31) / 32 ? warp_sums[threadIdx.x] : 0.f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (threadIdx.x == 0) scale = rsqrtf(s / width + 1e-5f);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < vecs; i += blockDim.x) {
        uint4 r = residual[row * vecs + i], g = w[i];
        unsigned* pr = reinterpret_cast<unsigned*>(&r);
        unsigned* pg = reinterpret_cast<unsigned*>(&g);
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            pr[j] = bf_pack(bf_lo(pr[j]) * scale * bf_lo(pg[j]), bf_hi(pr[j]) * scale * bf_hi(pg[j]));
        out[row * vecs + i] = r;
    }
}

// out[row, i] = silu(x[row, i]) * x[row, width + i] (bf16).  blockDim = min(width, 1024)
__global__ void silu_and_mul(const unsigned short* __restrict__ x, unsigned short* __restrict__ out, int width) {
    const long long row = blockIdx.x;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float g = __uint_as_float((unsigned)x[row * 2 * width + i] << 16);
        float u = __uint_as_float((unsigned)x[row * 2 * width + width + i] << 16);
        out[row * width + i] = (unsigned short)(bf_round(g / (1.f + __expf(-g)) * u) >> 16);
    }
}

// one thread follows next[] for hops steps
__global__ void chase(const unsigned int* __restrict__ next, int hops, unsigned int* __restrict__ sink) {
    unsigned int j = 0;
    for (int h = 0; h < hops; ++h) j = next[j];
    sink[0] = j;
}
}
"""
LAUNCHES = 64
ROWS = (1, 8, 32, 64, 128, 256, 1024)
NORM_WIDTHS = (4096, 8192)              # Llama-3.1-8B and -70B hidden sizes
SILU_WIDTHS = (14336, 7168, 3584)       # Llama-3.1-8B MLP; -70B MLP at TP 4 and 8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    args = ap.parse_args(argv)

    import cupy as cp

    mod = cp.RawModule(code=SOURCE)
    empty, norm, silu, chase = (mod.get_function(n) for n in
                                ("empty_kernel", "fused_add_rms_norm", "silu_and_mul", "chase"))
    stream = cp.cuda.Stream(non_blocking=True)

    def per_launch(launch) -> float:
        """µs per launch: LAUNCHES launches captured in one graph, median of 20 replays."""
        with stream:
            launch()
            stream.synchronize()
            stream.begin_capture()
            for _ in range(LAUNCHES):
                launch()
            graph = stream.end_capture()
            graph.launch(stream)
            stream.synchronize()
            times = []
            for _ in range(20):
                start, end = cp.cuda.Event(), cp.cuda.Event()
                start.record(stream)
                graph.launch(stream)
                end.record(stream)
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end) * 1e3 / LAUNCHES)
        return statistics.median(times)

    rows_out = []
    us = per_launch(lambda: empty((1,), (32,), ()))
    rows_out.append(("empty", 0, 1, us, "us_per_launch"))
    print(f"empty kernel                {us:7.2f} us", flush=True)
    for width in NORM_WIDTHS:
        w = cp.ones(width, dtype=cp.uint16)
        for rows in ROWS:
            x = cp.random.randint(0, 1 << 14, size=rows * width).astype(cp.uint16)
            res, out = x.copy(), cp.empty_like(x)
            threads = min(width // 8, 1024)
            us = per_launch(lambda: norm((rows,), (threads,), (x, res, w, out, cp.int32(width))))
            rows_out.append(("fused_add_rms_norm", width, rows, us, "us_per_launch"))
            print(f"fused_add_rms_norm {width:6d} x {rows:5d} {us:7.2f} us", flush=True)
    for width in SILU_WIDTHS:
        for rows in ROWS:
            x = cp.random.randint(0, 1 << 14, size=rows * 2 * width).astype(cp.uint16)
            out = cp.empty(rows * width, dtype=cp.uint16)
            threads = min(width, 1024)
            us = per_launch(lambda: silu((rows,), (threads,), (x, out, cp.int32(width))))
            rows_out.append(("silu_and_mul", width, rows, us, "us_per_launch"))
            print(f"silu_and_mul {width:6d} x {rows:5d}       {us:7.2f} us", flush=True)
    n = (512 << 20) // 4
    order = cp.random.permutation(n).astype(cp.uint32)     # one random cycle over 512 MiB
    nxt = cp.empty(n, dtype=cp.uint32)
    nxt[order] = cp.roll(order, -1)
    sink = cp.empty(1, dtype=cp.uint32)
    hops = 200_000
    chase((1,), (1,), (nxt, cp.int32(1000), sink))
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    chase((1,), (1,), (nxt, cp.int32(hops), sink))
    end.record()
    end.synchronize()
    ns = cp.cuda.get_elapsed_time(start, end) * 1e6 / hops
    rows_out.append(("dram_latency", 0, 1, ns, "ns_per_load"))
    print(f"DRAM latency (pointer chase, 512 MiB) {ns:7.1f} ns", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"row_kernels_{args.label}.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["gpu", "kernel", "width", "rows", "value", "unit", "src"])
        src = f"labsim benchmarks/measure_row_kernels.py, cupy {cp.__version__}"
        for kernel, width, rows, value, unit in rows_out:
            out.writerow([args.label, kernel, width, rows, f"{value:.5g}", unit, src])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

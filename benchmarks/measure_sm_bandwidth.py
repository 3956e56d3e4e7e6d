"""Measure how much DRAM bandwidth a few SMs can draw on a CUDA GPU, with CuPy.

Run on a machine with a GPU and CuPy (not part of the test suite)::

    python benchmarks/measure_sm_bandwidth.py --out DIR [--label h200]

Why: the cost model's ``sm_bw_share`` says how many times its fair share (DRAM bandwidth
/ SM count) one SM can draw. It decides how fast a decode-attention kernel with fewer
CTAs than SMs (one sequence, few KV heads) streams its KV cache. A fit left alone ran it
to unphysical values (one SM drawing most of the GPU's bandwidth); this measures the bound.

What is measured: a streaming-read kernel (16-byte loads, ``UNROLL`` independent loads in
flight per thread, 1024 threads per block, XOR-reduced so nothing is optimised away) run
on 1 to all SMs. Each block asks for more shared memory than half an SM has, so no two
blocks share an SM: *blocks* = SMs drawing. Each block reads its own chunk (at least
twice the L2), from a buffer filled with a hash of the index. Each figure is the median
of 7 timed launches (CUDA events) after 2 warm-ups. Writes ``DIR/sm_bandwidth_<label>.csv``
(unroll, blocks, bytes, latency_ms, gb_s, gb_s_per_sm) and
``DIR/env_sm_bandwidth_<label>.txt``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

KERNEL = r"""
extern "C" __global__ void __launch_bounds__(1024)
stream_read(const int4* __restrict__ x, unsigned long long chunk_vecs, int4* __restrict__ out) {
    extern __shared__ int pad[];
    const int4* base = x + (unsigned long long)blockIdx.x * chunk_vecs;
    int4 acc = make_int4(0, 0, 0, 0);
    const unsigned long long stride = (unsigned long long)blockDim.x * UNROLL;
    for (unsigned long long i = threadIdx.x; i < chunk_vecs; i += stride) {
        int4 v[UNROLL];
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            unsigned long long j = i + (unsigned long long)u * blockDim.x;
            v[u] = j < chunk_vecs ? base[j] : make_int4(0, 0, 0, 0);
        }
        #pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            acc.x ^= v[u].x; acc.y ^= v[u].y; acc.z ^= v[u].z; acc.w ^= v[u].w;
        }
    }
    if (threadIdx.x == 0) pad[0] = acc.x;
    __syncthreads();
    out[(unsigned long long)blockIdx.x * blockDim.x + threadIdx.x] = make_int4(acc.x ^ pad[0], acc.y, acc.z, acc.w);
}
"""
THREADS = 1024
UNROLLS = (1, 4, 8, 16)
MIB = 1 << 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    ap.add_argument("--buffer-gib", type=float, default=16.0)
    args = ap.parse_args(argv)

    import cupy as cp

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    sms = props["multiProcessorCount"]
    l2 = props["l2CacheSize"]
    smem_per_sm = props["sharedMemPerMultiprocessor"]
    smem = smem_per_sm // 2 + 16 * 1024          # more than half an SM: one block per SM
    total = int(args.buffer_gib * (1 << 30)) // 16 * 16
    x = cp.empty(total // 4, dtype=cp.uint32)
    cp.ElementwiseKernel("", "uint32 y", "y = (unsigned int)i * 2654435761u", "fill_hash")(x)
    out = cp.empty(sms * 2 * THREADS * 4, dtype=cp.int32)
    blocks_list = sorted({1, 2, 4, 8, 16, 33, 66, 99, sms})

    args.out.mkdir(parents=True, exist_ok=True)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    (args.out / f"env_sm_bandwidth_{args.label}.txt").write_text(
        f"gpu: {name}\nsms: {sms}\nl2_bytes: {l2}\nshared_mem_per_sm: {smem_per_sm}\n"
        f"cupy: {cp.__version__}\n"
        f"cuda runtime: {cp.cuda.runtime.runtimeGetVersion()}\n")
    with open(args.out / f"sm_bandwidth_{args.label}.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["gpu", "unroll", "blocks", "bytes", "latency_ms", "gb_s", "gb_s_per_sm", "src"])
        src = f"labsim benchmarks/measure_sm_bandwidth.py, cupy {cp.__version__}, {name}"
        for unroll in UNROLLS:
            kern = cp.RawKernel(KERNEL, "stream_read", options=(f"-DUNROLL={unroll}",))
            kern.max_dynamic_shared_size_bytes = smem
            for blocks in blocks_list:
                chunk = min(512 * MIB, total // blocks) // 16 * 16
                vecs = chunk // 16
                launch = lambda: kern((blocks,), (THREADS,), (x, cp.uint64(vecs), out), shared_mem=smem)  # noqa: E731
                for _ in range(2):
                    launch()
                times = []
                for _ in range(7):
                    start, end = cp.cuda.Event(), cp.cuda.Event()
                    start.record()
                    launch()
                    end.record()
                    end.synchronize()
                    times.append(cp.cuda.get_elapsed_time(start, end))
                ms = statistics.median(times)
                nbytes = chunk * blocks
                gbs = nbytes / (ms * 1e-3) / 1e9
                w.writerow([args.label, unroll, blocks, nbytes, f"{ms:.6g}", f"{gbs:.6g}", f"{gbs / blocks:.6g}", src])
                print(f"unroll {unroll:2d} blocks {blocks:4d}  {gbs:9.1f} GB/s  {gbs / blocks:7.1f} GB/s per SM", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure whole forward steps of a Llama-3.1-shaped decoder on a CUDA GPU with PyTorch.

Run on a machine with a GPU and PyTorch (not part of the test suite)::

    python benchmarks/measure_decoder_step_torch.py --out DIR [--label h100_sxm]
    python benchmarks/measure_decoder_step_torch.py --out DIR --label h200 --model llama70b --tp 4

The model has Llama-3.1-8B's shapes (32 layers, hidden 4096, 32 query / 8 KV heads of
128, MLP 14336, vocabulary 128256) with random bf16 weights, or with ``--model llama70b``
Llama-3.1-70B's (80 layers, hidden 8192, 64 / 8 heads, MLP 28672). ``--tp N`` builds one
GPU's shard of an N-way tensor-parallel model as vLLM splits it: 1/N of the query heads,
of the KV heads (at least one), of the MLP and of the vocabulary (the LM head is
vocabulary-parallel); norms and residuals stay whole. The collectives between the shards
are not run (one GPU): what is timed is one GPU's compute in a TP step. A step is what a serving
engine runs: per layer an RMSNorm, the QKV projection, attention over a contiguous KV
cache (``scaled_dot_product_attention``, cuDNN backend), the output projection, a residual
add, an RMSNorm, the gate/up projection, SiLU × up, the down projection and a residual
add; then the final norm and the LM head for the last token of each sequence. Rotary
embeddings and sampling are left out.

* decode steps (one new token for each of *b* sequences, each with *ctx* tokens of
  context) are captured in a CUDA graph and replayed, as vLLM does;
* prefill steps (one prompt of *n* tokens, causal) run eagerly.

Each figure is the median of timed replays (CUDA events); it writes
``DIR/step_<label>.csv`` (phase, batch, tokens, context, latency_ms), or with a model or
TP other than the default ``DIR/step_<model>_tp<N>_<label>.csv``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

#: (layers, hidden, query heads, KV heads, head_dim, MLP, vocabulary): the models' config.json
SHAPES = {"llama8b": ("Llama-3.1-8B", 32, 4096, 32, 8, 128, 14336, 128256),
          "llama70b": ("Llama-3.1-70B", 80, 8192, 64, 8, 128, 28672, 128256)}
DECODE = [(1, 1024), (8, 1024), (32, 1024), (64, 1024), (128, 1024), (256, 1024), (32, 4096), (64, 4096)]
PREFILL = [128, 512, 2048, 8192]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--label", default="gpu")
    ap.add_argument("--model", choices=sorted(SHAPES), default="llama8b")
    ap.add_argument("--tp", type=int, default=1, help="measure one GPU's shard of this TP degree")
    ap.add_argument("--profile", action="store_true",
                    help="also write each decode step's GPU time per kernel (torch.profiler, eager) "
                         "to DIR/kernels_<table>")
    ap.add_argument("--decode-only", action="store_true", help="leave the prefill steps out")
    args = ap.parse_args(argv)
    name, LAYERS, HIDDEN, heads, kv_heads, HEAD_DIM, mlp, vocab = SHAPES[args.model]
    tp = args.tp
    HEADS, KV_HEADS, MLP, VOCAB = heads // tp, max(1, kv_heads // tp), mlp // tp, -(-vocab // tp)
    model_label = f"{name} shapes" + (f", TP {tp} shard" if tp > 1 else "")
    table = (f"step_{args.label}.csv" if (args.model, tp) == ("llama8b", 1)
             else f"step_{args.model}_tp{tp}_{args.label}.csv")

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev, bf16 = torch.device("cuda"), torch.bfloat16
    torch.manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=dev, dtype=bf16) * 0.02

    layers = [dict(qkv=rand((HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN), o=rand(HIDDEN, HEADS * HEAD_DIM),
                   gate_up=rand(2 * MLP, HIDDEN), down=rand(HIDDEN, MLP),
                   n1=torch.ones(HIDDEN, device=dev, dtype=bf16), n2=torch.ones(HIDDEN, device=dev, dtype=bf16))
              for _ in range(LAYERS)]
    final_norm = torch.ones(HIDDEN, device=dev, dtype=bf16)
    lm_head = rand(VOCAB, HIDDEN)

    def forward(x, kv, causal):
        """x: [b, s, hidden]; kv: per layer (k, v) of [b, kv_heads, ctx, d] (the new tokens included)."""
        b, s, _ = x.shape
        for w, (k, v) in zip(layers, kv):
            h = F.rms_norm(x, (HIDDEN,), w["n1"])
            q, _k, _v = F.linear(h, w["qkv"]).split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], -1)
            q = q.view(b, s, HEADS, HEAD_DIM).transpose(1, 2)
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]):
                a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM), w["o"])
            h = F.rms_norm(x, (HIDDEN,), w["n2"])
            gate, up = F.linear(h, w["gate_up"]).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, w["down"])
        return F.linear(F.rms_norm(x[:, -1], (HIDDEN,), final_norm), lm_head)

    def timed(fn, reps=20):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def per_kernel(fn, reps=5):
        """(kernel name, launches per step, GPU µs per step) of *fn*, run eagerly under the profiler."""
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad():
            fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(reps):
                    fn()
                torch.cuda.synchronize()
        totals = {}
        for ev in prof.events():
            if str(getattr(ev, "device_type", "")).endswith("CUDA"):
                name = ev.name[:120]
                calls, us = totals.get(name, (0, 0.0))
                totals[name] = (calls + 1, us + ev.time_range.elapsed_us())
        return [(name, calls / reps, us / reps) for name, (calls, us) in
                sorted(totals.items(), key=lambda item: -item[1][1])]

    kernel_rows: list = []
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / table, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["gpu", "model", "phase", "batch", "new_tokens", "context", "latency_ms", "src"])
        src = (f"labsim benchmarks/measure_decoder_step_torch.py, torch {torch.__version__}, "
               f"{torch.cuda.get_device_name()}")
        for b, ctx in DECODE:
            kv = [(rand(b, KV_HEADS, ctx, HEAD_DIM), rand(b, KV_HEADS, ctx, HEAD_DIM)) for _ in range(LAYERS)]
            x = rand(b, 1, HIDDEN)
            with torch.no_grad():
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        forward(x, kv, False)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    forward(x, kv, False)
                ms = timed(graph.replay)
            out.writerow([args.label, model_label, "decode", b, b, ctx, f"{ms:.6g}", src])
            print(f"decode  b={b:4d} ctx={ctx:5d} {ms:8.3f} ms", flush=True)
            if args.profile:
                kernel_rows.extend([b, ctx, *row] for row in per_kernel(lambda x=x, kv=kv: forward(x, kv, False)))
            del kv, graph
            torch.cuda.empty_cache()
        for n in ([] if args.decode_only else PREFILL):
            kv = [(rand(1, KV_HEADS, n, HEAD_DIM), rand(1, KV_HEADS, n, HEAD_DIM)) for _ in range(LAYERS)]
            x = rand(1, n, HIDDEN)
            with torch.no_grad():
                ms = timed(lambda x=x, kv=kv: forward(x, kv, True), reps=10)
            out.writerow([args.label, model_label, "prefill", 1, n, 0, f"{ms:.6g}", src])
            print(f"prefill n={n:5d} {ms:8.3f} ms", flush=True)
            del kv
            torch.cuda.empty_cache()
    if args.profile:
        with open(args.out / f"kernels_{table}", "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["batch", "context", "kernel", "launches_per_step", "gpu_us_per_step"])
            out.writerows([b, ctx, name, f"{calls:g}", f"{us:.4g}"] for b, ctx, name, calls, us in kernel_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

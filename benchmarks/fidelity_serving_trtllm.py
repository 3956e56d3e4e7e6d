"""TensorRT-LLM predicted against published serving measurements, and against vLLM on the same traffic.

Runs every ``engine == trtllm`` row of ``serving_reference.csv`` (``benchmarks/data``,
or ``$LABSIM_SHARED_DATA``) with the workload
assumptions of ``fidelity_serving.py`` (its ``experiment(row)``: ShareGPT
lengths, load mode, TP, GPU) and TensorRT-LLM's ``trtllm-serve`` defaults, then
prints throughput, TTFT and TPOT predicted against published. Targets, as for
vLLM: throughput and TPOT within 15 %, TTFT within 25 % away from saturation.

Where the same source measured vLLM on the same model, GPU, workload and load
(S5-01 beside S5-03), it also runs both engines in one experiment — identical
request stream — and compares the predicted TensorRT-LLM / vLLM ratio with the
published one.

    python benchmarks/fidelity_serving_trtllm.py [--rows S5-03]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fidelity_serving as base  # noqa: E402  (the shared workload assumptions)
import labsim  # noqa: E402

PAIR_KEYS = ("source_id", "model", "gpu", "tp", "workload", "load_mode", "request_rate_rps",
             "max_concurrency", "num_prompts", "input_len", "output_len")


def metrics(s) -> dict:
    thr = s["throughput"]
    return {"output_tok_s": thr["output_tokens_per_s"],
            "total_tok_s": (thr["output_tokens_per_s"] or 0) + (thr["input_tokens_per_s"] or 0),
            "req_s": thr["requests_per_s"],
            "ttft_mean_ms": s["ttft_ms"]["mean"], "ttft_median_ms": s["ttft_ms"]["p50"],
            "tpot_mean_ms": s["tpot_ms"]["mean"], "tpot_median_ms": s["tpot_ms"]["p50"],
            "e2e_mean_ms": s["e2e_ms"]["mean"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="", help="comma-separated row ids (default: every trtllm row)")
    args = ap.parse_args(argv)
    wanted = {r for r in args.rows.split(",") if r}
    table = base.reference_rows()
    print(f"{'row':6} {'engine':7} {'metric':22} {'predicted':>11} {'published':>11} {'error':>8}")
    for row in table:
        if row["engine"] != "trtllm" or (wanted and row["row_id"] not in wanted):
            continue
        if row["model"] not in base.MODELS:
            print(f"{row['row_id']:6} trtllm  skipped: model not in labsim")
            continue
        pair = next((r for r in table if r["engine"] == "vllm"
                     and all(r[k] == row[k] for k in PAIR_KEYS)), None)
        exp = base.experiment(row)
        fw = exp["frameworks_to_test"][0]
        fw["name"], fw["config"] = "trtllm", {"model": base.MODELS[row["model"]],
                                              "tensor_parallel_size": int(row["tp"] or 1)}
        if pair is not None:
            exp["frameworks_to_test"].insert(0, {"name": "vllm", "type": "vllm", "config": {
                **fw["config"], **base.engine_config(pair)}})
        started = time.perf_counter()
        try:
            result = labsim.run(exp)
        except labsim.LabsimError as ex:
            print(f"{row['row_id']:6} trtllm  failed: {ex}")
            continue
        predicted = {name: metrics(s) for name, s in result.summary["frameworks"].items()}
        for name, pred in predicted["trtllm"].items():
            if row.get(name):
                print(f"{row['row_id']:6} trtllm  {name:22} {base.fmt(pred):>11} "
                      f"{float(row[name]):>11.2f} {base.err(pred, row[name]):>8}")
        if pair is not None:
            print(f"{row['row_id']:6} ratio   trtllm/vllm against {pair['row_id']} (same traffic):")
            for name, pred in predicted["trtllm"].items():
                ref_t, ref_v, pred_v = row.get(name), pair.get(name), predicted["vllm"][name]
                if ref_t and ref_v and pred and pred_v:
                    print(f"{'':6} {'':7} {name:22} {pred / pred_v:>11.3f} "
                          f"{float(ref_t) / float(ref_v):>11.3f}")
        print(f"{row['row_id']:6} {'':7} ({row['load_mode']})")
        print(f"{row['row_id']}: {time.perf_counter() - started:.1f} s wall", file=sys.stderr)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Copy into benchmarks/data/ the third-party tables the fidelity scripts read.

    python benchmarks/data/cut_shared_data.py SHARED_DATA_FOLDER

Rows and values are copied unchanged; only columns the scripts do not read are left out
(the A100 tables' parquet file names, Vidur's per-operator statistics other than the medians
of the operators compared). See README.md for the sources and licences.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (source path under the shared folder, destination under benchmarks/data — the same layout,
#: so $LABSIM_SHARED_DATA can point the scripts at the full folder — and columns, None = all)
FILES = [
    ("serving_reference.csv", "serving_reference.csv", None),
    ("traces/cluster/gavel_colocation_pairs.csv", "traces/cluster/gavel_colocation_pairs.csv", None),
    ("calibration/a100_sxm/nccl_a100_sxm.csv", "calibration/a100_sxm/nccl_a100_sxm.csv", None),
    ("calibration/a100_sxm/custom_ar_a100_sxm.csv", "calibration/a100_sxm/custom_ar_a100_sxm.csv", None),
    ("calibration/a100_sxm/gemm_a100_sxm.csv", "calibration/a100_sxm/gemm_a100_sxm.csv",
     ["gpu", "framework", "version", "kernel_source", "dtype", "m", "n", "k", "latency_ms"]),
    ("calibration/a100_sxm/attn_a100_sxm.csv", "calibration/a100_sxm/attn_a100_sxm.csv",
     ["gpu", "framework", "version", "kernel_source", "phase", "batch_size", "isl", "step",
      "seq_len", "num_heads", "num_key_value_heads", "head_dim", "attn_dtype", "kv_cache_dtype",
      "latency_ms"]),
    ("anchors/vidur_a30_qwen2_7b/mlp.csv", "anchors/vidur_a30_qwen2_7b/mlp.csv",
     ["num_tokens", "n_embd", "n_expanded_embd", "n_head", "n_kv_head", "use_gated_mlp",
      "time_stats.attn_pre_proj.median", "time_stats.attn_post_proj.median",
      "time_stats.mlp_up_proj.median", "time_stats.mlp_down_proj.median"]),
    ("anchors/vidur_a30_qwen2_7b/attention.csv", "anchors/vidur_a30_qwen2_7b/attention.csv",
     ["n_q_head", "n_kv_head", "n_embd", "batch_size", "kv_cache_size", "is_prefill",
      "prefill_chunk_size", "time_stats.attn_prefill.median", "time_stats.attn_decode.median"]),
]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/data/cut_shared_data.py SHARED_DATA_FOLDER", file=sys.stderr)
        return 2
    shared = Path(argv[0])
    for source, dest, columns in FILES:
        src, out = shared / source, HERE / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        if columns is None:
            shutil.copyfile(src, out)
            continue
        with open(src, newline="", encoding="utf-8") as fin, \
                open(out, "w", newline="", encoding="utf-8") as fout:
            reader = csv.DictReader(fin)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                print(f"{src}: missing column(s) {', '.join(missing)}", file=sys.stderr)
                return 2
            writer = csv.DictWriter(fout, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(reader)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

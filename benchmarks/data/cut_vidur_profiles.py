"""Copy into benchmarks/data/anchors/ the Vidur operator profiles of other GPUs.

    python benchmarks/data/cut_vidur_profiles.py VIDUR_GIT_DIR

*VIDUR_GIT_DIR* is a clone of github.com/microsoft/vidur (its ``.git`` folder or a bare
repository; the files are read with ``git show COMMIT:PATH``, so the checkout may be at any
commit). Values are copied unchanged; left out are the columns no script reads (every statistic
but the medians of the operators compared), the tensor-parallel rows other than those named in
:data:`FILES`, and, in the attention table, the rows whose cached context is not a multiple of
256 tokens (the profile steps it by 32: one row in eight is kept, ~2,900 of ~14,700), and the
attention profile's backend and timing method, the same in every row (:data:`ATTENTION_CONSTANT`;
the script stops if a row differs).
See README.md for the sources and the licence (MIT, © Microsoft Corporation).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: microsoft/vidur main as of 2024-09 (the compute profiles of data/profiling/compute/, added in
#: commits bee57da and e26eb8f, 2024-05-14)
MAIN = "7d47513363ec447a741ac5e47241580b47724fbf"
#: "Copy files fromm internal fork" (2024-05-08): the only commit whose attention profile is
#: stored in git itself; later ones are Git LFS objects
FIRST = "e2d00e9afba96cec9f0e7ea560bbfc4a539fae6a"

MLP_COLUMNS = ["num_tokens", "n_embd", "n_expanded_embd", "n_head", "n_kv_head", "use_gated_mlp",
               "time_stats.attn_pre_proj.median", "time_stats.attn_post_proj.median",
               "time_stats.mlp_up_proj.median", "time_stats.mlp_down_proj.median"]
ATTENTION_COLUMNS = ["n_q_head", "n_kv_head", "n_embd", "num_tensor_parallel_workers",
                     "batch_size", "kv_cache_size", "is_prefill", "prefill_chunk_size",
                     "time_stats.attn_prefill.median", "time_stats.attn_decode.median"]
#: what every row of the attention profile says in the columns left out
ATTENTION_CONSTANT = {"attention_backend": "AttentionBackend.FLASH_ATTENTION",
                      "profile_method": "ProfileMethod.KINETO"}


def _tp1(row: dict) -> bool:
    return row["num_tensor_parallel_workers"] == "1"


def _context_step_256(row: dict) -> bool:
    if any(row.get(k) != v for k, v in ATTENTION_CONSTANT.items()):
        raise ValueError(f"attention row not {ATTENTION_CONSTANT}: {row}")
    return int(row["kv_cache_size"]) % 256 == 0


#: (commit, path in microsoft/vidur, destination under benchmarks/data, columns, row filter)
FILES = [
    (MAIN, f"data/profiling/compute/{gpu}/meta-llama/Llama-2-7b-hf/mlp.csv",
     f"anchors/vidur_{gpu}_llama2_7b/mlp.csv", MLP_COLUMNS, _tp1)
    for gpu in ("a100", "h100", "a40")
] + [
    (FIRST, "data/profiling/a100/attention.csv", "anchors/vidur_a100_llama2_70b_tp2/attention.csv",
     ATTENTION_COLUMNS, _context_step_256),
]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/data/cut_vidur_profiles.py VIDUR_GIT_DIR", file=sys.stderr)
        return 2
    for commit, source, dest, columns, keep in FILES:
        shown = subprocess.run(["git", "--git-dir", argv[0], "show", f"{commit}:{source}"],
                               capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            print(f"{commit[:7]}:{source}: {shown.stderr.strip()}", file=sys.stderr)
            return 2
        reader = csv.DictReader(io.StringIO(shown.stdout))
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            print(f"{source}: missing column(s) {', '.join(missing)}", file=sys.stderr)
            return 2
        out = HERE / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(fout, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(row for row in reader if keep(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

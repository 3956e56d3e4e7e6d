"""A GPU calibrated from its own `labsim measure` tables, checked on whole decoder steps.

For each GPU of ``benchmarks/data/h100_torch`` and ``h200_torch`` (kernel tables made by the
code of ``labsim measure``, and whole forward steps made by
``benchmarks/measure_decoder_step_torch.py``, all on the same card), this fits a profile to the
kernel tables as ``labsim calibrate --joint-attention`` does, then prices the whole steps:
CUDA-graph decode steps and eager prefill steps of ≥ 2048 tokens, Llama-3.1-8B and, where
measured, one GPU's shard of Llama-3.1-70B at TP 2/4/8. Beside it the shipped profile
(H100-SXM's, which also prices the H200). Printed: points, median |error| and median signed
error per step table (predicted / measured − 1).

    python benchmarks/fidelity_own_calibration.py
"""

from __future__ import annotations

import csv
import shutil
import statistics
import tempfile
from pathlib import Path

import labsim
import labsim_gpus.plugin as plugin
from labsim_gpus.cli import build_profile
from labsim_gpus.profiles import write_profile
from labsim_llm.engine.step_cost import StepPricer, capture_sizes
from labsim_llm.models import builtin_models

DATA = Path(__file__).resolve().parent / "data"
#: (catalog GPU, folder, table label)
GPUS = [("H100-SXM", "h100_torch", "h100_sxm_torch"), ("H200-SXM", "h200_torch", "h200_torch")]
#: (model, TP, step table name)
STEPS = [("Llama-3.1-8B", 1, "step"), ("Llama-3.1-70B", 2, "step_llama70b_tp2"),
         ("Llama-3.1-70B", 4, "step_llama70b_tp4"), ("Llama-3.1-70B", 8, "step_llama70b_tp8")]


def own_profile(preset: str, folder: str, label: str, work: Path):
    """*preset* priced by a profile fitted to its own tables (GEMMs alone and in a CUDA graph,
    attention, device and host copies where measured), as `labsim calibrate --joint-attention`
    fits it."""
    tables = work / folder
    tables.mkdir()
    for table in ("gemm", "gemm_graph", "attn", "copy", "host_copy"):
        if (DATA / folder / f"{table}_{label}.csv").exists():
            shutil.copy(DATA / folder / f"{table}_{label}.csv", tables / f"{table}_{label}.csv")
    device = labsim.device(preset)
    profile = build_profile(device, tables, None, f"{folder}_own", f"benchmarks/data/{folder}",
                            joint_attention=True)
    path = work / f"{folder}.json"
    write_profile(path, profile)
    return plugin.preset("GPU").customize({"preset": preset, "profile": str(path)})


def step_errors(gpu, folder: str, label: str, model_name: str, tp: int, table: str) -> list[float]:
    path = DATA / folder / f"{table}_{label}.csv"
    if not path.exists():
        return []
    model = builtin_models()[model_name]
    graphs = StepPricer(model, gpu, tp=tp, graph_sizes=capture_sizes(1024, 8192))
    eager = StepPricer(model, gpu, tp=tp, graph_sizes=[])
    errors = []
    with open(path, newline="") as handle:
        for r in csv.DictReader(handle):
            b, n, ctx, t = int(r["batch"]), int(r["new_tokens"]), int(r["context"]), float(r["latency_ms"]) * 1e-3
            if r["phase"] == "decode":
                errors.append(graphs.step_time((), b, b * (ctx + 1)) / t - 1)
            elif n >= 2048:       # shorter eager prompts are bound by PyTorch's launches
                errors.append(eager.step_time([(n, 0)], 0, 0) / t - 1)
    return errors


def main() -> int:
    print("Whole decoder steps against a profile fitted to the same GPU's own kernel tables")
    print("(median |error|, median signed; decode steps in a CUDA graph, prefill >= 2048 tokens)")
    print(f"  {'GPU':9s} {'steps':26s} {'n':>3s}   {'own calibration':>17s}   {'shipped H100 profile':>20s}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset, folder, label in GPUS:
            own = own_profile(preset, folder, label, Path(tmp))
            shipped = labsim.device(preset)
            for model_name, tp, table in STEPS:
                mine = step_errors(own, folder, label, model_name, tp, table)
                theirs = step_errors(shipped, folder, label, model_name, tp, table)
                if not mine:
                    continue
                what = model_name.replace("Llama-3.1-", "") + (f" TP {tp} shard" if tp > 1 else "")
                cells = [f"{statistics.median(map(abs, e)) * 100:5.1f}% {statistics.median(e) * 100:+6.1f}%"
                         for e in (mine, theirs)]
                print(f"  {preset:9s} {what:26s} {len(mine):3d}   {cells[0]:>17s}   {cells[1]:>20s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

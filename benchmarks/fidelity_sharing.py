"""Fidelity of labsim-sharing against Gavel's measured co-locations of two training jobs on one V100.

Gavel (Narayanan et al., "Heterogeneity-Aware Cluster Scheduling Policies for Deep Learning
Workloads", OSDI'20; stanford-futuredata/gavel, MIT) measured each job type's throughput alone
and co-located with every other type on one GPU. ``traces/cluster/gavel_colocation_pairs.csv``
holds, for each pair, each job's throughput relative to alone (``norm_a``, ``norm_b``; 0 when the
pair did not run). Of its job types labsim models ResNet-50 (ImageNet, 224 × 224) at batch sizes
16 to 128, so this script compares the V100 ResNet-50 pairs:

- **alone**: labsim's iterations/s of each batch size (fp32, PyTorch's default in Gavel's
  scripts) against Gavel's;
- **together**: each job's throughput relative to alone under ``time_slicing`` and ``mps``
  against Gavel's. Every job is measured while its partner is still running (the partner is
  given enough iterations to outlast it), as Gavel's steady-state throughputs are;
- **fit**: the pairs Gavel could not co-locate (zero throughput), against labsim's
  out-of-memory failures of time-slicing on a V100 of 16 GB (the V100-SXM2-32GB preset with
  its memory set to 16 GiB, four 4 GiB HBM2 stacks: the V100 datasheet's 16 GB model).

Prints the median absolute error of the relative throughputs per mode. Nothing here is fitted:
``switch_us``, ``slice_ms`` and ``memory_bound_sm_share`` keep their defaults.

    python benchmarks/fidelity_sharing.py
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
import time
from pathlib import Path

import labsim
from labsim.errors import LabsimError

#: V100-SXM2-16GB: 16 GB of HBM2 (4 stacks of 4 GiB), NVIDIA Tesla V100 datasheet
#: (https://images.nvidia.com/content/technologies/volta/pdf/tesla-volta-v100-datasheet-letter-fnl-web.pdf)
V100_16GB = {"device_id": "gpu0", "device_type": "V100-SXM2-32GB", "memory_capacity_bytes": 16 * 2**30}
MODES = ("time_slicing", "mps")
#: NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md,
#: "Training performance: NVIDIA DGX-1 16GB (8x V100 16GB)", 1 GPU, FP32, pytorch-21.03 NGC
#: container, their benchmark_training mode: images/s
DLE_V100_FP32_IMG_S = 367.0
#: iterations of the job measured; its partner runs until it has finished
ITERATIONS = 30


def pairs() -> list[dict]:
    """Gavel's V100 rows where both jobs are ResNet-50, one per unordered pair of batch sizes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_data import need

    out, seen = [], set()
    with open(need("traces", "cluster", "gavel_colocation_pairs.csv"), encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            a = re.fullmatch(r"ResNet-50 \(batch size (\d+)\)", r["job_a"])
            b = re.fullmatch(r"ResNet-50 \(batch size (\d+)\)", r["job_b"])
            if r["gpu"] != "v100" or not (a and b):
                continue
            key = tuple(sorted((int(a.group(1)), int(b.group(1)))))
            if key in seen:
                continue
            seen.add(key)
            out.append({"a": int(a.group(1)), "b": int(b.group(1)), "iso_a": float(r["iso_tput_a"]),
                        "iso_b": float(r["iso_tput_b"]), "norm_a": float(r["norm_a"]),
                        "norm_b": float(r["norm_b"])})
    return sorted(out, key=lambda p: (p["a"], p["b"]))


def job(name: str, batch: int, iterations: int) -> dict:
    return {"name": name, "type": "ddp", "is_target_for_workload": False, "placement": {"gpu": "gpu0"},
            "config": {"micro_batch_size": batch, "precision": "fp32",
                       "job": {"model": "ResNet-50", "global_batch_size": batch, "iterations": iterations}}}


def experiment(jobs: list[dict], mode: str | None) -> dict:
    hardware = {"compute_devices": [dict(V100_16GB)]}
    if mode:
        hardware["sharing"] = {"type": mode}
    return {"name": "gavel-v100-pair", "simulation": {"max_simulation_time": 1e6, "random_seed": 1},
            "hardware_profile": hardware, "frameworks_to_test": jobs}


def alone(batch: int) -> float | str:
    """labsim's iteration time of one job alone, or why it cannot run."""
    try:
        return labsim.run(experiment([job("a", batch, ITERATIONS)], None)).summary["frameworks"]["a"]["iteration_time_s"]
    except LabsimError as ex:
        return str(ex).splitlines()[-1].split(": ", 2)[-1]


def together(mine: int, other: int, mode: str, alone_s: dict) -> float | str:
    """Job *mine*'s throughput relative to alone while a job of batch *other* shares the GPU
    under *mode* (the partner outlasts it), or the failure that stopped the pair."""
    partner = int(ITERATIONS * alone_s[mine] / alone_s[other] * 4) + 10
    try:
        s = labsim.run(experiment([job("a", mine, ITERATIONS), job("b", other, partner)], mode)).summary
    except LabsimError as ex:
        return str(ex).splitlines()[-1].split(": ", 2)[-1]
    failures = s["hardware"]["sharing"]["gpu0"].get("failures") or {}
    if failures:
        return "; ".join(f"{k}: {v['kind']}" for k, v in sorted(failures.items()))
    return alone_s[mine] / s["frameworks"]["a"]["iteration_time_s"]


def main() -> int:
    began = time.process_time()
    rows = pairs()
    batches = sorted({p["a"] for p in rows} | {p["b"] for p in rows})
    alone_s = {b: alone(b) for b in batches}
    iso = {}
    for p in rows:
        iso[p["a"]], iso[p["b"]] = p["iso_a"], p["iso_b"]
    print("ResNet-50 fp32 on one V100 (16 GB), alone: iterations/s")
    print(f"  {'batch':>5}  {'Gavel':>7}  {'labsim':>7}  {'error':>7}  {'labsim images/s':>15}")
    for b in batches:
        lab = alone_s[b]
        if isinstance(lab, str):
            print(f"  {b:>5}  {iso[b]:>7.2f}  {'-':>7}  labsim: {lab}")
        else:
            print(f"  {b:>5}  {iso[b]:>7.2f}  {1 / lab:>7.2f}  {(1 / lab - iso[b]) / iso[b]:>+7.0%}  {b / lab:>15.0f}")
    print(f"  NVIDIA's DeepLearningExamples, one V100 16GB, FP32: "
          f"{DLE_V100_FP32_IMG_S:.0f} images/s")
    print()
    print("two jobs together: each job's throughput relative to alone (a | b)")
    head = f"  {'pair':<9}  {'Gavel':>11}  " + "  ".join(f"{m:>13}" for m in MODES)
    print(head)
    errors: dict[str, list[float]] = {m: [] for m in MODES}
    fits: dict[str, list[str]] = {"agree": [], "disagree": []}
    for p in rows:
        measured = (p["norm_a"], p["norm_b"])
        ran = measured[0] > 0 and measured[1] > 0
        cells, notes = [], []
        for mode in MODES:
            if isinstance(alone_s[p["a"]], str) or isinstance(alone_s[p["b"]], str):
                cells.append(f"{'alone OOM':>13}")
                continue
            got = (together(p["a"], p["b"], mode, alone_s), together(p["b"], p["a"], mode, alone_s))
            if any(isinstance(g, str) for g in got):
                cells.append(f"{'fails':>13}")
                notes.append(f"{mode}: {next(g for g in got if isinstance(g, str))}")
                if mode == "time_slicing":
                    fits["agree" if not ran else "disagree"].append(f"{p['a']}+{p['b']}")
                continue
            cells.append(f"{got[0]:>6.3f}|{got[1]:<6.3f}")
            if ran:
                errors[mode] += [abs(g - m) for g, m in zip(got, measured)]
            if mode == "time_slicing":
                fits["agree" if ran else "disagree"].append(f"{p['a']}+{p['b']}")
        gavel = f"{measured[0]:>5.3f}|{measured[1]:<5.3f}" if ran else f"{'did not run':>11}"
        print(f"  {p['a']:>3}+{p['b']:<5}  {gavel}  " + "  ".join(cells)
              + (f"   ({'; '.join(notes)})" if notes else ""))
    print()
    for mode in MODES:
        e = errors[mode]
        if e:
            print(f"{mode}: median |error| of the relative throughput {statistics.median(e):.3f} "
                  f"(max {max(e):.3f}) over {len(e)} jobs in pairs that ran")
    print(f"fits in 16 GB together (Gavel ran the pair / labsim's time-slicing ran it): agree on "
          f"{len(fits['agree'])} of {len(fits['agree']) + len(fits['disagree'])} pairs"
          + (f"; disagree on {', '.join(fits['disagree'])}" if fits["disagree"] else ""))
    print(f"[{time.process_time() - began:.1f} s CPU]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

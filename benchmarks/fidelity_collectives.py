"""Fidelity of labsim's collective model against measured nccl-tests and published bus bandwidths.

Prints, for nccl-tests on 2, 4 and 8 A100-SXM4-80GB of one NVSwitch node
(benchmarks/data/calibration/a100_sxm/nccl_a100_sxm.csv): the median and max
absolute error of the predicted time across message sizes, and the bus
bandwidth error at ≥ 256 MiB (targets: median ≤ 15 %, busbw within 10 %).
Hopper/Blackwell tables: benchmarks/fidelity_collectives_hopper.py. Then the published
all-reduce bus bandwidths of
the shared data folder's collectives_reference.md §3 (A100 / H100 / H200 / B200, ring and
NVLS, PCIe, multi-node), and the serving frameworks' custom all-reduce.

    python benchmarks/fidelity_collectives.py          # the figures
    python benchmarks/fidelity_collectives.py --fit    # refit the NVLink constants and print them

The tables ship in benchmarks/data (see its README); $LABSIM_SHARED_DATA points elsewhere.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import labsim
from labsim_collectives import calibration
from labsim_collectives.plugin import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import need  # noqa: E402

OPS = {
    "all_reduce": "all_reduce",
    "all_gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "alltoall": "all_to_all",
}
GiB, MiB = 1 << 30, 1 << 20

# (label, topology preset or device, ranks, algorithm, published busbw GB/s, source)
PUBLISHED = [
    ("8x A100 SXM ring", "dgx-a100", 8, "auto", 232, "GTC24 S62129"),
    ("8x H100 SXM ring", "dgx-h100", 8, "ring", 370, "GTC24 S62129; ASTRA-sim 370.67"),
    ("8x H100 SXM NVLS", "dgx-h100", 8, "nvls", 480, "GTC24 S62129"),
    ("8x H200 SXM ring", "hgx-h200", 8, "ring", 365.6, "stas00 ml-engineering, NCCL_NVLS_ENABLE=0"),
    ("8x H200 SXM NVLS", "hgx-h200", 8, "nvls", 473.1, "stas00 ml-engineering"),
    ("8x B200 ring", "hgx-b200", 8, "ring", 682.2, "stas00 ml-engineering"),
    ("8x B200 NVLS", "hgx-b200", 8, "nvls", 838.0, "stas00 ml-engineering"),
    ("8x L40S PCIe Gen4 ring", "pcie-l40s", 8, "auto", 24, "GTC24 S62129 (PCIe Gen4)"),
    ("2x DGX A100 (16 GPUs, 8x HDR)", ("dgx-a100", 2), 16, "auto", 192, "GTC24 S62129 multi-node"),
    ("2x DGX H100 (16 GPUs, 8x NDR)", ("dgx-h100", 2), 16, "ring", 380, "GTC24 S62129 (no NVLS)"),
    (
        "2x DGX H100 NVLS+SHARP (16 GPUs)",
        ("dgx-h100", 2, {"ib_sharp": True}),
        16,
        "auto",
        480,
        "GTC24 S62129 (NVLS + IB SHARP)",
    ),
]


def load(name: str) -> list[dict]:
    path = need("calibration", "a100_sxm", name)
    with path.open() as fh:
        return list(csv.DictReader(fh))


def points(rows: list[dict], topo, csv_op: str, n: int):
    """``(size, measured s, predicted s)`` of each nccl-tests row of *csv_op* on *n* GPUs."""
    op = BY_NAME[OPS[csv_op]]
    for row in rows:
        if row["op_name"] == csv_op and int(row["num_gpus"]) == n:
            size = int(row["message_bytes"])
            yield size, float(row["latency_ms"]) * 1e-3, op.time(size, ranks=n, device=topo.device, topology=topo)


def nccl_table(topo) -> None:
    rows = load("nccl_a100_sxm.csv")
    print("nccl-tests on A100-SXM4-80GB (one NVSwitch node), predicted vs measured time")
    print(
        f"{'collective':15s} {'GPUs':>4s} {'median|err|':>11s} {'max|err|':>9s}   "
        "busbw >= 256 MiB: measured / predicted GB/s (err)"
    )
    all_errors, big_errors = [], []
    for csv_op, op_name in OPS.items():
        op = BY_NAME[op_name]
        for n in (2, 4, 8):
            errors, big = [], []
            for size, measured, predicted in points(rows, topo, csv_op, n):
                errors.append(abs(predicted / measured - 1))
                if size >= 256 * MiB:
                    bw_m = op.bus_bandwidth(size, measured, n) / 1e9
                    bw_p = op.bus_bandwidth(size, predicted, n) / 1e9
                    big.append((size, bw_m, bw_p, bw_p / bw_m - 1))
            all_errors += errors
            big_errors += [b[3] for b in big]
            bigtxt = "  ".join(f"{b[1]:.0f}/{b[2]:.0f} ({b[3]:+.1%})" for b in sorted(big)[::2])
            print(
                f"{op_name:15s} {n:4d} {statistics.median(errors):11.1%} {max(errors):9.1%}   {bigtxt}"
            )
    print(
        f"overall: median |err| {statistics.median(all_errors):.1%} over {len(all_errors)} points; "
        f"busbw >= 256 MiB: max |err| {max(abs(e) for e in big_errors):.1%}"
    )


def published_table() -> None:
    print("\nPublished large-message all-reduce bus bandwidth vs labsim (8 GiB)")
    ar = BY_NAME["all_reduce"]
    for label, where, ranks, algo, busbw, source in PUBLISHED:
        if isinstance(where, tuple):
            topo = labsim.topology(where[0]).customize({"nodes": where[1], **dict(where[2:] and where[2])})
        else:
            topo = labsim.topology(where)
        size = 8 * GiB
        chosen, priced = ar.cost(size, ranks=ranks, topology=topo, algorithm=algo)
        predicted = ar.bus_bandwidth(size, priced.seconds, ranks) / 1e9
        print(
            f"  {label:32s} published {busbw:6.1f}  labsim {predicted:6.1f} "
            f"({predicted / busbw - 1:+6.1%})  [{chosen}/{priced.protocol}]  {source}"
        )


def custom_ar_table(topo) -> None:
    rows = [
        r
        for r in load("custom_ar_a100_sxm.csv")
        if r["backend"] == "vllm_graph" and int(r["message_bytes"]) <= 4 * MiB
    ]
    ar = BY_NAME["all_reduce"]
    print("\nvLLM 0.14 custom all-reduce (CUDA graph, <= 4 MiB) vs algorithm='custom_ar'")
    for n in (2, 4, 8):
        errors = [
            abs(
                ar.time(int(r["message_bytes"]), ranks=n, topology=topo, algorithm="custom_ar")
                / (float(r["latency_ms"]) * 1e-3)
                - 1
            )
            for r in rows
            if int(r["num_gpus"]) == n
        ]
        print(
            f"  {n} GPUs: median |err| {statistics.median(errors):.1%}, max {max(errors):.1%} "
            f"({len(errors)} sizes)"
        )


def refit() -> None:
    samples = calibration.samples_from_nccl_rows(load("nccl_a100_sxm.csv"))
    device = labsim.device("A100-SXM4-80GB")
    fitted = calibration.fit_nccl(samples, device.nvlink_bw, device.mem_bw)
    print("fit_nccl on nccl_a100_sxm.csv (paste into labsim_collectives/params.py NVLINK):")
    for proto, p in fitted.items():
        print(
            f"  {proto:6s} base={p.base * 1e6:.3f} us  alpha={p.alpha * 1e6:.3f} us  eff={p.eff:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fit", action="store_true", help="refit the NVLink constants and print them"
    )
    args = parser.parse_args()
    if args.fit:
        refit()
        return
    topo = labsim.topology("dgx-a100")
    nccl_table(topo)
    published_table()
    custom_ar_table(topo)


if __name__ == "__main__":
    main()

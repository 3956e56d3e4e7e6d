"""Fidelity of labsim's collective model on Hopper and Blackwell against public nccl-tests tables.

The tables are in benchmarks/data/hopper_nccl/ (README there: source, hardware, NCCL version
and command of each). They are split in two:

- fit: what params.HOPPER was fitted on — the Ring/LL part (32 KiB - 1 MiB) of the 8x H200
  nccl-tests all_reduce sweep, the ring-only 16 GiB all_reduce / all_gather / reduce_scatter of
  8x H200, and the NVLS-forced 8x H100 all_reduce sweep (Azure ND H100 v5);
- check (held out): the rest of the 8x H200 nccl-tests sweep (2 MiB - 16 GiB, NVLS), the 8x
  H200 PyTorch sweep, the NVLS-forced 8x H200 sweep (Azure ND H200 v5), an 8x H100 PyTorch
  all_reduce sweep of 128 B - 16 MB (Triton-distributed issue #57), the per-call latency of
  an 8x H200 all_reduce of 8 B - 1 MiB (nccl-tests timing each call, one process per GPU) and
  of an 8x B200 one of 8 B (PyTorch, calls queued), the 8 GiB all_reduce
  over 5-8 H200 GPUs with and without NVLS, the 4x H100 nccl-tests all_reduce / all_gather /
  reduce_scatter sweeps of 8 B - 8 GiB (NCCL 2.29.2; an all_reduce one with NCCL 2.26.2 and
  its PyTorch twin), the 2/4/6x H100 all_reduce of 256 MiB - 8 GiB with NCCL's choice, Ring
  and NVLS forced, and everything Blackwell (params.BLACKWELL is carried from Hopper by
  NCCL's tuner ratios, not fitted). The Hopper Simple latency is NCCL's own tuner constant,
  fitted on nothing.

For each table: median and P90 of |predicted / measured - 1| of the time of one call. The 4x
H100 nccl-tests sweeps ran ``-g 4``: one thread launches all four GPUs' kernels, so up to
~1 MiB every call takes the ~22-25 us that launching costs (the host, not the GPUs, sets the
pace: the 8-process 8x H200 sweep takes 18 us at 32 KiB). Their rows are split there: ``<= 1
MiB`` is that harness floor, not something labsim prices; ``>= 2 MiB`` is the collective.

Then the serving engines' own custom all-reduce in CUDA-graph mode (benchmarks/data/
hopper_custom_allreduce/, README there): vLLM's one-shot (ca_1stage), two-shot (ca_2stage)
and NCCL (pynccl) per source x GPU x TP, against labsim's ``one_shot``, ``two_shot`` and
``auto``. Fit: vLLM PR #24111's H100 TP=4 and TP=6 tables (what params.HOPPER.custom_ar was
fitted on); check: PR #24532's TP=4 table (GPU not stated; priced as an H100) and PR #24111's
TP=2 value. NCCL is never fitted here (params.HOPPER's NCCL constants come from the nccl-tests
tables above). The column "Ampere consts" prices the same rows with the A100-fitted kernel
constants that every generation used before.

    python benchmarks/fidelity_collectives_hopper.py                  # the figures
    python benchmarks/fidelity_collectives_hopper.py --fit            # refit the Hopper constants
    python benchmarks/fidelity_collectives_hopper.py --fit-custom-ar  # refit Hopper's custom AR
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import labsim
from labsim_collectives import params as P
from labsim_collectives.calibration import ProtocolParams
from labsim_collectives.plugin import BY_NAME, FACTORS

DATA = Path(__file__).resolve().parent / "data" / "hopper_nccl"
CUSTOM_AR_DATA = DATA.parent / "hopper_custom_allreduce" / "vllm_device_communicators.csv"
#: what labsim prices each measured column as
CUSTOM_AR_ALGORITHM = {"ca_1stage": "one_shot", "ca_2stage": "two_shot", "pynccl": "auto"}
#: the GPU a table is priced on ("not stated": PR #24532's table matches PR #24111's H100 one)
CUSTOM_AR_TOPOLOGY = {"H100": "dgx-h100", "not stated": "dgx-h100"}
MiB = 1 << 20
FOUR_GPU = "h100_4gpu_nccltests_2.29.2.csv"
TOPOLOGY = {"H100-SXM": "dgx-h100", "H200-SXM": "hgx-h200", "B200": "hgx-b200"}


def rows(name: str) -> list[dict]:
    with (DATA / name).open() as fh:
        return list(csv.DictReader(fh))


def seconds(row: dict) -> float:
    """Time of one call: the table's ``time_us``, else from its busbw (nccl-tests definitions)."""
    if row.get("time_us"):
        return float(row["time_us"]) * 1e-6
    n, size = int(row["num_gpus"]), int(row["message_bytes"])
    return size * FACTORS[row["op_name"]](n) / (float(row["busbw_GBps"]) * 1e9)


def algorithm(row: dict) -> str:
    """What the row ran: NVLS forced, ring forced (NVLS disabled) or NCCL's own choice."""
    setting = row.get("setting") or row.get("algorithm", "default")
    if setting in ("nvls", "NCCL_NVLS_ENABLE=1", "NCCL_ALGO=NVLS"):
        return "nvls"
    if setting in ("NCCL_NVLS_ENABLE=0", "NCCL_ALGO=Ring"):
        return "ring"
    return "auto"


def predicted(row: dict, algo: str | None = None) -> float:
    topo = labsim.topology(TOPOLOGY[row["gpu"]])
    nodes = int(row.get("nodes") or 1)
    if nodes > 1:
        topo = topo.customize({"nodes": nodes})
    op = BY_NAME[row["op_name"]]
    return op.time(
        int(row["message_bytes"]),
        ranks=int(row["num_gpus"]),
        topology=topo,
        algorithm=algo or algorithm(row),
    )


def _errors(table: list[dict], algo=None) -> list[float]:
    return [abs(predicted(r, algo) / seconds(r) - 1) for r in table]


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def _launch_bound(row: dict) -> bool:
    return int(row["message_bytes"]) <= MiB


def _collective_bound(row: dict) -> bool:
    return int(row["message_bytes"]) > MiB


def split() -> dict[str, list[tuple[str, list[dict], str | None]]]:
    """``{"fit": [...], "check": [...]}``: (label, rows, forced algorithm or None)."""
    h200 = rows("h200_8gpu_allreduce_nccltests_2.30.7.csv")
    small = [r for r in h200 if int(r["message_bytes"]) <= MiB]
    large = [r for r in h200 if int(r["message_bytes"]) > MiB]
    sweep = rows("nvls_gpu_count_sweep.csv")
    hopper = [r for r in sweep if r["gpu"] == "H200-SXM"]
    ring16 = [r for r in hopper if r["algorithm_nccl_picked"] == "ring" and r["message_bytes"] == str(16 << 30)]
    at8 = [r for r in hopper if r["op_name"] == "all_reduce" and r["message_bytes"] == str(8 << 30)]
    b200 = [r for r in rows("b200_allreduce_torch_2.27.7.csv") if r["nodes"] == "1"]
    h100_torch = [
        r for r in rows("h100_8gpu_allreduce_torch_triton_distributed_57.csv") if r["message_bytes"] != str(2 * MiB)
    ]
    # the 8 KiB out-of-place all_gather (59.5 us, 22.8 us in place, 22-25 us around it) is the
    # host-side launch spike that source documents, left out like the 2 MB row above
    four = [r for r in rows(FOUR_GPU) if not (r["op_name"] == "all_gather" and r["message_bytes"] == "8192")]
    scaling = rows("h100_2_4_6gpu_allreduce_nccltests_2.29.2.csv")
    latency = rows("allreduce_latency_per_call_2.30.7.csv")
    return {
        "fit": [
            ("8x H200 all_reduce <= 1 MiB (Ring/LL)", small, None),
            ("8x H200 16 GiB ring AR/AG/RS", ring16, None),
            ("8x H100 all_reduce NVLS forced (Azure)", rows("azure_nd_h100_v5_allreduce_nvls.csv"), "nvls"),
        ],
        "check": [
            ("8x H200 all_reduce >= 2 MiB (nccl-tests 2.30.7)", large, None),
            ("8x H200 all_reduce (PyTorch, NCCL 2.30.7)", rows("h200_8gpu_allreduce_torch_2.30.7.csv"), None),
            ("8x H200 all_reduce NVLS forced (Azure)", rows("azure_nd_h200_v5_allreduce_nvls.csv"), "nvls"),
            ("8x H100 all_reduce 128 B - 16 MB (PyTorch)", h100_torch, None),
            ("8x H200 all_reduce 8 B - 1 MiB per call (nccl-tests)",
             [r for r in latency if r["gpu"] == "H200-SXM"], None),
            ("4-8 H200 all_reduce 8 GiB, default", [r for r in at8 if r["setting"] == "default"], None),
            ("4-8 H200 all_reduce 8 GiB, NVLS off", [r for r in at8 if "=0" in r["setting"]], None),
            *(
                (f"4x H100 {op} {label} (nccl-tests -g 4, 2.29.2)", [r for r in four if r["op_name"] == op and keep(r)],
                 None)
                for op in ("all_reduce", "all_gather", "reduce_scatter")
                for label, keep in (("<= 1 MiB", _launch_bound), (">= 2 MiB", _collective_bound))
            ),
            *(
                (f"4x H100 all_reduce {label} (nccl-tests -g 4, 2.26.2)", [r for r in lambda_ if keep(r)], None)
                for lambda_ in [rows("h100_4gpu_allreduce_nccltests_2.26.2.csv")]
                for label, keep in (("<= 1 MiB", _launch_bound), (">= 2 MiB", _collective_bound))
            ),
            ("4x H100 all_reduce (PyTorch, NCCL 2.26.2)", rows("h100_4gpu_allreduce_torch_2.26.2.csv"), None),
            ("2-6 H100 all_reduce >= 256 MiB, NCCL's choice / Ring", [r for r in scaling if "NVLS" not in r["setting"]],
             None),
            ("2-6 H100 all_reduce >= 256 MiB, NCCL_ALGO=NVLS", [r for r in scaling if "NVLS" in r["setting"]], None),
            ("Blackwell: 4-8 B200 all_reduce 8 GiB", [r for r in sweep if r["gpu"] == "B200"], None),
            ("Blackwell: 8x B200 all_reduce (PyTorch)", b200, None),
            ("Blackwell: 8x B200 all_reduce 8 B, per call (PyTorch)", [r for r in latency if r["gpu"] == "B200"],
             None),
        ],
    }


def report() -> None:
    print("labsim collectives vs public Hopper / Blackwell tables: |predicted/measured - 1| of t")
    print(f"{'':8s}{'table':56s} {'points':>6s} {'median':>7s} {'P90':>7s}")
    for part, tables in split().items():
        for label, table, algo in tables:
            errors = _errors(table, algo)
            print(
                f"{part:8s}{label:56s} {len(errors):6d} {statistics.median(errors):7.1%} "
                f"{_p90(errors):7.1%}"
            )
    print("\nper point (check tables): size, measured us, predicted us")
    for label, table, algo in split()["check"][:1]:
        for r in table:
            print(
                f"  {label[:20]} {int(r['message_bytes']):>12d} {seconds(r) * 1e6:10.1f} "
                f"{predicted(r, algo) * 1e6:10.1f}"
            )
    four_gpu_report()


def four_gpu_report() -> None:
    """Per point of the 4x H100 nccl-tests sweeps (NCCL 2.29.2): measured and predicted us."""
    ops = ("all_reduce", "all_gather", "reduce_scatter")
    table = {(r["op_name"], int(r["message_bytes"])): r for r in rows(FOUR_GPU)}
    print("\nper point (4x H100 nccl-tests -g 4, NCCL 2.29.2; <= 1 MiB is the launch floor): measured / predicted us")
    print(f"  {'size':>10s}" + "".join(f" {op:>19s}" for op in ops))
    for size in sorted({s for _, s in table}):
        cells = []
        for op in ops:
            r = table.get((op, size))
            cells.append(f" {seconds(r) * 1e6:9.1f}/{predicted(r) * 1e6:9.1f}" if r else f" {'':19s}")
        print(f"  {size:>10d}" + "".join(cells))


def _try(gen: P.Generation, table: list[dict], algo: str | None) -> float:
    P.GENERATIONS["nvlink4"] = gen
    for op in BY_NAME.values():
        op._cache.clear()
    return statistics.fmean(_errors(table, algo))


def refit() -> None:
    """Fit the Hopper constants block by block, each on its own fit table (grid search of the
    mean |error|): the launch-latency saving (LL and LL128; Simple's latency is NCCL's tuner
    constant) on the small-message part of the 8x H200 sweep,
    the Simple efficiency on the ring-only 16 GiB rows, NVLS latency / efficiency / pipeline
    fill on the NVLS-forced 8x H100 sweep."""
    (_, small, _), (_, ring16, _), (_, nvls_table, nvls_algo) = split()["fit"]
    base = P.HOPPER
    try:
        launch = min(
            (
                _try(
                    replace(base, nvlink={
                        k: replace(v, base=P.NVLINK[k].base - saving) if k != "Simple" else v
                        for k, v in base.nvlink.items()
                    }),
                    small,
                    None,
                ),
                saving,
            )
            for saving in [x * 1e-7 for x in range(0, 90, 2)]
        )
        # all-reduce and the gather/scatter pair weigh the same (the local copy γ·S weighs more
        # on the latter, so one efficiency cannot fit both exactly)
        ar16 = [r for r in ring16 if r["op_name"] == "all_reduce"]
        gs16 = [r for r in ring16 if r["op_name"] != "all_reduce"]
        simple = min(
            (
                (_try(replace(base, nvlink={**base.nvlink, "Simple": replace(base.nvlink["Simple"], eff=eff)}), ar16, None)
                 + _try(replace(base, nvlink={**base.nvlink, "Simple": replace(base.nvlink["Simple"], eff=eff)}), gs16, None))
                / 2,
                eff,
            )
            for eff in (0.86, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 1.0)
        )
        nvls = min(
            (_try(replace(base, nvls=ProtocolParams(lat, 0.0, eff, fill)), nvls_table, nvls_algo), lat, eff, fill)
            for lat, eff, fill in itertools.product(
                (21e-6, 24e-6, 27e-6, 30e-6, 33e-6), (0.66, 0.68, 0.70, 0.72, 0.74), (0.0, 4e6, 8e6, 12e6, 16e6, 24e6)
            )
        )
    finally:
        P.GENERATIONS["nvlink4"] = base
    print(f"launch: saving {launch[1] * 1e6:.1f} us on LL and LL128  (mean |err| {launch[0]:.1%})")
    print(f"Simple: eff {simple[1]}  (mean |err| {simple[0]:.1%})")
    print(
        f"NVLS:   latency {nvls[1] * 1e6:.0f} us, eff {nvls[2]}, fill {nvls[3] / 1e6:.0f} MB "
        f"(mean |err| {nvls[0]:.1%})"
    )


def custom_ar_rows() -> list[dict]:
    with CUSTOM_AR_DATA.open() as fh:
        return list(csv.DictReader(fh))


def custom_ar_part(row: dict) -> str:
    """``fit`` for the rows params.HOPPER.custom_ar was fitted on, ``check`` for the rest."""
    fitted = row["source"] == "vllm#24111" and row["num_gpus"] in ("4", "6") and row["algorithm"] != "pynccl"
    return "fit" if fitted else "check"


def custom_ar_predicted(row: dict) -> float:
    topo = labsim.topology(CUSTOM_AR_TOPOLOGY[row["gpu"]])
    return BY_NAME["all_reduce"].time(
        int(row["message_bytes"]), ranks=int(row["num_gpus"]), topology=topo,
        algorithm=CUSTOM_AR_ALGORITHM[row["algorithm"]],
    )


def _custom_ar_errors(table: list[dict]) -> list[float]:
    return [abs(custom_ar_predicted(r) / (float(r["time_us"]) * 1e-6) - 1) for r in table]


@contextmanager
def _with_custom_ar(kernels: dict[str, ProtocolParams]):
    """Context: Hopper priced with *kernels* as its custom all-reduce constants."""
    base = P.GENERATIONS["nvlink4"]
    P.GENERATIONS["nvlink4"] = replace(base, custom_ar=kernels)
    BY_NAME["all_reduce"]._cache.clear()
    try:
        yield
    finally:
        P.GENERATIONS["nvlink4"] = base
        BY_NAME["all_reduce"]._cache.clear()


def custom_ar_report() -> None:
    print("\nServing engines' custom all-reduce, CUDA-graph mode (vLLM benchmark_device_communicators.py)")
    print("|predicted/measured - 1| of one call; labsim one_shot / two_shot / auto (NCCL)")
    print(f"{'':6s}{'source':11s} {'GPU':10s} {'TP':>2s} {'measured':9s} {'labsim':8s} {'points':>6s} "
          f"{'median':>7s} {'P90':>7s}   {'Ampere consts':>13s}")
    groups: dict[tuple, list[dict]] = {}
    for r in custom_ar_rows():
        key = (custom_ar_part(r), r["source"], r["gpu"], int(r["num_gpus"]), r["algorithm"])
        groups.setdefault(key, []).append(r)
    for key in sorted(groups, key=lambda k: (k[0] != "fit", k[1], k[3], k[4])):
        part, source, gpu, n, algo = key
        table = groups[key]
        errors = _custom_ar_errors(table)
        with _with_custom_ar(P.AMPERE.custom_ar):
            before = _custom_ar_errors(table)
        print(f"{part:6s}{source:11s} {gpu:10s} {n:2d} {algo:9s} {CUSTOM_AR_ALGORITHM[algo]:8s} {len(table):6d} "
              f"{statistics.median(errors):7.1%} {_p90(errors):7.1%}   "
              f"{statistics.median(before):6.1%} {_p90(before):6.1%}")
    print("\nper point (4 GPUs, PR #24111): size, kernel, measured us, predicted us")
    for r in (r for r in custom_ar_rows() if r["source"] == "vllm#24111" and r["num_gpus"] == "4"):
        print(f"  {r['source']:11s} {r['num_gpus']:>2s} {int(r['message_bytes']):>8d} {r['algorithm']:9s} "
              f"{float(r['time_us']):6.1f} {custom_ar_predicted(r) * 1e6:6.1f}")


def custom_ar_refit() -> None:
    """Fit ``base`` and ``eff`` of Hopper's one-shot and two-shot kernels on the fit rows:
    relative least squares of ``t - γ·S = base + link_bytes / (B · eff)``, link_bytes the
    bytes each GPU reads from its peers ((n-1)·S one-shot, 2(n-1)/n·S two-shot)."""
    import numpy as np

    topo = labsim.topology("dgx-h100")
    device = BY_NAME["all_reduce"].group(2, None, topo).device
    link, gamma = float(topo.nvlink_per_gpu), 2.0 / float(device.mem_bw)
    rows = [r for r in custom_ar_rows() if custom_ar_part(r) == "fit"]
    for column, kernel in (("ca_1stage", "one_shot"), ("ca_2stage", "two_shot")):
        x, y = [], []
        for r in (r for r in rows if r["algorithm"] == column):
            n, size, t = int(r["num_gpus"]), int(r["message_bytes"]), float(r["time_us"]) * 1e-6
            read = (n - 1) * size if kernel == "one_shot" else 2 * (n - 1) / n * size
            x.append([1.0 / t, read / link / t])
            y.append((t - gamma * size) / t)
        (base, inv_eff), *_ = np.linalg.lstsq(np.array(x), np.array(y), rcond=None)
        print(f"{kernel}: base {base * 1e6:.2f} us, eff {1 / inv_eff:.3f}  ({len(y)} points)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit the Hopper constants")
    parser.add_argument("--fit-custom-ar", action="store_true", help="refit Hopper's custom all-reduce")
    args = parser.parse_args()
    if args.fit:
        refit()
        return
    if args.fit_custom_ar:
        custom_ar_refit()
        return
    report()
    custom_ar_report()


if __name__ == "__main__":
    main()

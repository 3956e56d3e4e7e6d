"""Which local-memory term should all_gather / reduce_scatter pay? Candidates, refitted, on every table.

labsim prices every collective ``... + γ · S`` with ``γ = 2 / mem_bw``: a read and a write of
the whole nccl-tests size S in local HBM. NCCL's ring kernels (NVIDIA/nccl src/device/
all_reduce.h, all_gather.h, reduce_scatter.h) fuse that traffic into the ring's steps; what
each GPU reads from and writes to the *user* buffers, beyond the FIFO traffic that follows
the link bytes (and so sits in the fitted link efficiency), is:

- all_reduce: reads all of its input (step 0 ``directSend``, ``directRecvReduceDirectSend``,
  ``directRecvReduceCopyDirectSend`` each read one input chunk S/n) and writes all of its
  output (the reduced chunk and the n-1 received ones): S + S = 2S, i.e. γ · S;
- all_gather, out of place: reads its own chunk S/n once (``directCopySend``, which also
  writes it into the output) and writes the whole output S: S + S/n (in place: S);
- reduce_scatter: reads all of its input S (``send``, ``recvReduceSend``, ``recvReduceCopy``
  each read one input chunk) and writes its own reduced chunk S/n: S + S/n.

Candidates for all_gather / reduce_scatter (all_reduce, all_to_all and the rest keep γ · S):

- ``A`` γ · S (what labsim does);
- ``B`` γ · S / n (only the own-chunk copy, read + write of S/n);
- ``D`` γ · S (n+1) / (2n) (the user-buffer read + write above, each byte once).

For each candidate, the NVLink constants are refitted as the repo fits them: the A100 ones by
``calibration.fit_nccl`` on the A100 nccl-tests table (each sample's local bytes set by the
candidate; Hopper's LL / LL128 follow, as params.py derives them), then Hopper's Simple
efficiency by the grid of ``fidelity_collectives_hopper.py --fit`` on the 8x H200 16 GiB ring
rows. Then it prints the A100 figures (median |error| per collective and GPU count, overall),
the Hopper / Blackwell tables (median and P90 of |predicted / measured - 1|) and the signed
error per size of the 4x H100 sweeps from 16 MiB.

    python benchmarks/collectives_local_copy.py            # candidates A, B, D
    python benchmarks/collectives_local_copy.py --only D   # one of them
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import labsim
from labsim_collectives import algorithms, calibration
from labsim_collectives import params as P
from labsim_collectives.plugin import BY_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity_collectives as a100_bench  # noqa: E402
import fidelity_collectives_hopper as hopper_bench  # noqa: E402

GATHER_SCATTER = ("all_gather", "reduce_scatter", "allgather", "reducescatter")
#: candidate -> the fraction of γ · S an all_gather / reduce_scatter over n GPUs pays
CANDIDATES = {
    "A": lambda n: 1.0,
    "B": lambda n: 1.0 / n,
    "D": lambda n: (n + 1) / (2 * n),
}
SIMPLE_EFFS = (0.86, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 1.0)


def _clear() -> None:
    for op in BY_NAME.values():
        op._cache.clear()


@contextmanager
def candidate(fraction):
    """Gather / scatter plans charge ``fraction(n) · γ · S``; NVLink constants restored after."""
    classes = (algorithms.RingGatherScatter, algorithms.TwoLevelGatherScatter, algorithms.NvlsGatherScatter)
    originals = {cls: cls.plan for cls in classes}
    saved = (dict(P.NVLINK), {c: dict(v) for c, v in P.CLASS_PARAMS.items()}, dict(P.GENERATIONS))

    def wrap(plan):
        def scaled(self, group, nbytes):
            out = plan(self, group, nbytes)
            return replace(out, nbytes=out.nbytes * fraction(group.n))

        return scaled

    for cls, plan in originals.items():
        cls.plan = wrap(plan)
    _clear()
    try:
        yield
    finally:
        for cls, plan in originals.items():
            cls.plan = plan
        P.NVLINK.clear()
        P.NVLINK.update(saved[0])
        for c, v in saved[1].items():
            P.CLASS_PARAMS[c].clear()
            P.CLASS_PARAMS[c].update(v)
        P.GENERATIONS.update(saved[2])
        _clear()


def refit_a100(fraction) -> dict[str, calibration.ProtocolParams]:
    """fit_nccl on the A100 table with each sample's local bytes set by *fraction*; installs the
    result (NVLink, the carried PCIe / network constants, Hopper's LL / LL128) and returns it."""
    samples = []
    for row in a100_bench.load("nccl_a100_sxm.csv"):
        for s in calibration.samples_from_nccl_rows([row]):
            n = int(row["num_gpus"])
            local = fraction(n) if row["op_name"] in GATHER_SCATTER else 1.0
            samples.append(replace(s, nbytes=s.nbytes * local))
    device = labsim.device("A100-SXM4-80GB")
    fitted = calibration.fit_nccl(samples, device.nvlink_bw, device.mem_bw)
    old = dict(P.NVLINK)
    P.NVLINK.update(fitted)
    for link_class in ("pcie", "net"):
        P.CLASS_PARAMS[link_class].update(P._carried(link_class))
    hopper = P.GENERATIONS["nvlink4"]
    carried = {
        k: replace(
            hopper.nvlink[k],
            base=hopper.nvlink[k].base + fitted[k].base - old[k].base,
            alpha=fitted[k].alpha,
            eff=hopper.nvlink[k].eff * fitted[k].eff / old[k].eff,
        )
        for k in ("LL", "LL128")
    }
    _set_hopper_nvlink({**hopper.nvlink, **carried})
    return fitted


def _set_hopper_nvlink(nvlink: dict) -> None:
    """Hopper's NVLink constants; Blackwell keeps Hopper's LL and Simple as params.py does."""
    hopper = replace(P.GENERATIONS["nvlink4"], nvlink=nvlink)
    blackwell = P.GENERATIONS["nvlink5"]
    P.GENERATIONS["nvlink4"] = hopper
    P.GENERATIONS["nvlink5"] = replace(
        blackwell, nvlink={**blackwell.nvlink, "LL": nvlink["LL"], "Simple": nvlink["Simple"]}
    )
    _clear()


def refit_hopper_simple() -> float:
    """Hopper's Simple efficiency: the grid of fidelity_collectives_hopper.py --fit (all_reduce
    and the gather/scatter pair of the 16 GiB ring rows weigh the same); installs it."""
    ring16 = hopper_bench.split()["fit"][1][1]
    ar16 = [r for r in ring16 if r["op_name"] == "all_reduce"]
    gs16 = [r for r in ring16 if r["op_name"] != "all_reduce"]
    nvlink = dict(P.GENERATIONS["nvlink4"].nvlink)
    scored = []
    for eff in SIMPLE_EFFS:
        _set_hopper_nvlink({**nvlink, "Simple": replace(nvlink["Simple"], eff=eff)})
        errors = [statistics.fmean(hopper_bench._errors(t)) for t in (ar16, gs16)]
        scored.append((statistics.fmean(errors), eff))
    best = min(scored)[1]
    _set_hopper_nvlink({**nvlink, "Simple": replace(nvlink["Simple"], eff=best)})
    return best


def a100_report() -> None:
    topo = labsim.topology("dgx-a100")
    rows = a100_bench.load("nccl_a100_sxm.csv")
    every, big = [], []
    print("  A100 nccl-tests: median |err| per GPU count 2 / 4 / 8 (busbw err at 512 MiB)")
    for csv_op, op_name in a100_bench.OPS.items():
        cells = []
        for n in (2, 4, 8):
            errors, at512 = [], None
            for size, measured, predicted in a100_bench.points(rows, topo, csv_op, n):
                errors.append(abs(predicted / measured - 1))
                if size >= 256 * a100_bench.MiB:
                    big.append(abs(measured / predicted - 1))
                if size == 512 * a100_bench.MiB:
                    at512 = measured / predicted - 1
            every += errors
            cells.append(f"{statistics.median(errors):5.1%} ({at512:+6.1%})")
        print(f"    {op_name:15s} " + "  ".join(cells))
    print(
        f"    overall median |err| {statistics.median(every):.1%} over {len(every)} points; "
        f"busbw >= 256 MiB max |err| {max(big):.1%}"
    )


def hopper_report() -> None:
    print(f"  {'':6s}{'Hopper / Blackwell table':56s} {'points':>6s} {'median':>7s} {'P90':>7s}")
    for part, tables in hopper_bench.split().items():
        for label, table, algo in tables:
            errors = hopper_bench._errors(table, algo)
            print(
                f"  {part:6s}{label:56s} {len(errors):6d} {statistics.median(errors):7.1%} "
                f"{hopper_bench._p90(errors):7.1%}"
            )


def per_size_report() -> None:
    """Signed error (predicted / measured - 1) per size of the 4x H100 all_gather / reduce_scatter
    (and all_reduce for reference) from 16 MiB, where the size bins above hide opposite trends."""
    table = {(r["op_name"], int(r["message_bytes"])): r for r in hopper_bench.rows(hopper_bench.FOUR_GPU)}
    sizes = sorted(s for op, s in table if op == "all_gather" and s >= 16 * a100_bench.MiB)
    print("  4x H100 nccl-tests 2.29.2, predicted / measured - 1 by size (MiB):")
    print("    " + " " * 15 + "".join(f"{s >> 20:>7d}" for s in sizes))
    for op in ("all_reduce", "all_gather", "reduce_scatter"):
        errs = [hopper_bench.predicted(table[op, s]) / hopper_bench.seconds(table[op, s]) - 1 for s in sizes]
        print(f"    {op:15s}" + "".join(f"{e:+7.1%}" for e in errs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CANDIDATES), help="one candidate")
    args = parser.parse_args()
    for name, fraction in CANDIDATES.items():
        if args.only and name != args.only:
            continue
        with candidate(fraction):
            fitted = refit_a100(fraction)
            eff = refit_hopper_simple()
            print(f"candidate {name}: all_gather / reduce_scatter pay {fraction(4):.3g} γ·S on 4 GPUs, "
                  f"{fraction(8):.3g} on 8")
            print(
                "  refitted: A100 "
                + ", ".join(f"{k} base {v.base * 1e6:.2f} us alpha {v.alpha * 1e6:.3f} us eff {v.eff:.4f}"
                            for k, v in fitted.items())
                + f"; Hopper Simple eff {eff}"
            )
            a100_report()
            hopper_report()
            per_size_report()
        print()


if __name__ == "__main__":
    main()

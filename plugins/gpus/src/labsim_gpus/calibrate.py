"""Fitting a device's cost parameters to measured kernel tables.

``labsim calibrate --device A100-SXM4-80GB --data DIR --output profile.json``
reads measured tables shaped like the project's ``calibration/a100_sxm/``:

``gemm_*.csv``
    columns ``m, n, k, dtype, latency_ms`` (one row per timed GEMM call, each timed alone).
    A ``gemm_graph_<label>.csv`` beside ``gemm_<label>.csv`` (``labsim measure``: GEMMs back to
    back in a CUDA graph, timed per call) replaces the rows of the shapes it times: that is how
    a serving engine runs its decode GEMMs, with the launch ramp and tail of a kernel timed
    alone hidden. Fitted on lone small GEMMs, ``kernel_overhead_s`` would carry that ramp into
    every kernel of a CUDA-graph step (whole decode steps 12-25 % slow on an H200, against
    2-11 % with the graph rows);
``attn_*.csv``
    columns ``phase`` (context | generation), ``batch_size``, ``seq_len``,
    ``num_heads``, ``num_key_value_heads``, ``head_dim``, ``kv_cache_dtype``,
    ``latency_ms``. Context rows are prefill without cached prefix (``seq_len``
    new tokens); generation rows decode one token with ``seq_len`` tokens cached.
    Where one build times a shape with several kernels (``kernel_source``; ``labsim
    measure`` times PyTorch's cuDNN and FlashAttention backends), the fastest is kept: a
    serving engine runs the best kernel it has, and that is what the profile stands for;
``copy_*.csv`` (optional)
    columns ``bytes, latency_ms``: device-to-device copies, which fit ``stream_mem_eff`` (the
    fraction of DRAM bandwidth element-wise work, norms and copies reach) on copies of 64 MiB
    and more, where a kernel's fixed cost is negligible;
``host_copy_*.csv`` (optional)
    columns ``direction`` (h2d | d2h), ``host_memory`` (pinned | pageable), ``bytes,
    latency_ms``: copies over the host link, whose pinned rows fit ``host_link_eff`` and
    ``host_copy_latency_s``.

It fits the dimensionless efficiencies and fixed overheads of
:class:`~labsim_gpus.params.CostParams` — never per-shape corrections — by
minimising the mean absolute log error (a relative error that treats 2x too
slow like 2x too fast; capped per point, see :data:`LOSS_CAP`), in three stages: GEMM, then prefill attention on top
of the GEMM parameters, then decode attention. With ``joint_attention`` (``labsim calibrate
--joint-attention``) a fourth stage refits the prefill and decode parameters together on both
families' rows: they share ``attn_overhead_s``, which the prefill stage alone sets from
prefill rows only. The optimiser is a plain
Nelder–Mead over the logarithms of the parameters (positive by construction).
Other tables in the folder (NCCL, all-reduce) are recorded as present but
belong to the collectives plugin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from labsim.errors import UsageError

from labsim_gpus import kernels
from labsim_gpus.dtypes import canonical, nbytes
from labsim_gpus.params import CostParams

GEMM_FIT = ("gemm_compute_eff", "gemm_mem_eff", "onchip_bw_ratio", "smooth_p", "kernel_overhead_s")
PREFILL_FIT = ("attn_compute_eff", "attn_overhead_s")
DECODE_FIT = ("decode_mem_eff", "decode_cta_s", "sm_bw_share")
#: the optional joint attention stage: prefill and decode share ``attn_overhead_s``
ATTENTION_FIT = PREFILL_FIT + DECODE_FIT
#: fitted on device copies (``copy_*.csv``) and pinned host copies (``host_copy_*.csv``)
COPY_FIT = ("stream_mem_eff",)
HOST_FIT = ("host_link_eff", "host_copy_latency_s")
#: the smallest device copy that fits ``stream_mem_eff`` (below it the kernel's fixed cost shows)
COPY_MIN_BYTES = 64 << 20
#: every family of measured points, in fitting order
FAMILIES = ("gemm", "prefill", "decode", "copy", "host")
#: the per-point loss is |log(predicted / measured)| capped here (≈ 35 %), so that the few
#: shapes where a library switches to another kernel do not drag the physical parameters
LOSS_CAP = 0.3


@dataclass(frozen=True)
class Point:
    """One measured kernel: its family, shape and latency in seconds."""

    family: str          # "gemm" | "prefill" | "decode"
    shape: tuple
    seconds: float
    source: str


def _rows(path: Path):
    """``(line number, row dict)`` of a measured table; unreadable files are a UsageError."""
    from labsim.default_plugins.distributions import read_csv_rows

    rows = read_csv_rows(path, "calibration table")
    if not rows:
        return
    header = [h.strip().lstrip("\ufeff") for h in rows[0]]
    for line, cells in enumerate(rows[1:], start=2):
        if cells and any(c.strip() for c in cells):
            yield line, {h: c.strip() for h, c in zip(header, cells)}


def _need(row: dict, columns, path: Path):
    missing = [c for c in columns if c not in row]
    if missing:
        raise UsageError(f"{path.name}: missing column(s) {', '.join(missing)}")


def _whole(row: dict, column: str, where: str) -> int:
    """A positive whole number from *column*, or a UsageError naming the file, line and column."""
    try:
        value = float(row[column])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 1 or value > 2**53:
        raise UsageError(f"{where}: column {column!r} must be a whole number ≥ 1, got {row[column]!r}")
    return int(value)


def _latency(row: dict, where: str) -> float:
    """Seconds of ``latency_ms``: a finite number > 0 (a NaN would poison the fit)."""
    try:
        value = float(row["latency_ms"])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{where}: column 'latency_ms' must be a finite number > 0, got {row['latency_ms']!r}"
        )
    return value * 1e-3


def _gemm_rows(path: Path, want: str | None):
    """``(shape, seconds)`` of each GEMM row of *path* (of framework *want*, casefolded, if given)."""
    for line, row in _rows(path):
        _need(row, ("m", "n", "k", "dtype", "latency_ms"), path)
        if want and (row.get("framework") or "").casefold() != want:
            continue
        where = f"{path} line {line}"
        shape = (_whole(row, "m", where), _whole(row, "n", where), _whole(row, "k", where),
                 canonical(row["dtype"]))
        yield shape, _latency(row, where)


def load_points(data_dir: str | Path, framework: str | None = None) -> list[Point]:
    """Every GEMM and attention measurement found in *data_dir* (see module docstring).

    :param framework: keep only rows whose ``framework`` column equals it (case-insensitive),
        e.g. ``SGLang``; None keeps every build.
    """
    want = framework.casefold() if framework else None
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: not a folder of measured tables")
    points: list[Point] = []
    graphed: dict[tuple, Point] = {}      # (label, shape) -> the shape timed back to back in a graph
    for path in sorted(data_dir.glob("gemm_graph_*.csv")):
        for shape, seconds in _gemm_rows(path, want):
            graphed[(path.name[len("gemm_graph_"):], shape)] = Point("gemm", shape, seconds, path.name)
    for path in sorted(data_dir.glob("gemm_*.csv")):
        if "llama" in path.name:  # model-shape joins of the same grid (interpolated duplicates)
            continue
        if path.name.startswith("gemm_graph_"):
            continue
        label = path.name[len("gemm_"):]
        for shape, seconds in _gemm_rows(path, want):
            points.append(graphed.pop((label, shape), None) or Point("gemm", shape, seconds, path.name))
    points.extend(graphed.values())
    fastest: dict[tuple, int] = {}  # (table, build, phase, shape) -> index of its fastest point
    for path in sorted(data_dir.glob("attn_*.csv")):
        for line, row in _rows(path):
            _need(row, ("phase", "batch_size", "seq_len", "num_heads", "num_key_value_heads",
                        "head_dim", "latency_ms"), path)
            if want and (row.get("framework") or "").casefold() != want:
                continue
            phase = {"context": "prefill", "generation": "decode"}.get(row["phase"], row["phase"])
            if phase not in ("prefill", "decode"):
                continue
            where = f"{path} line {line}"
            kv = canonical(row.get("kv_cache_dtype") or "bf16", "kv_cache_dtype")
            shape = tuple(_whole(row, c, where) for c in (
                "batch_size", "seq_len", "num_heads", "num_key_value_heads", "head_dim")) + (kv,)
            point = Point(phase, shape, _latency(row, where), path.name)
            key = (path.name, (row.get("framework") or "").casefold(), phase, shape)
            seen = fastest.get(key)
            if seen is None:
                fastest[key] = len(points)
                points.append(point)
            elif point.seconds < points[seen].seconds:
                points[seen] = point
    if not points:
        which = f" with framework {framework!r}" if framework else ""
        raise UsageError(f"--data {data_dir}: no gemm_*.csv or attn_*.csv rows{which} found")
    points.extend(_copy_points(data_dir))
    return points


def _copy_points(data_dir: Path) -> list[Point]:
    """Device copies of ``COPY_MIN_BYTES`` or more and pinned host copies, as points."""
    out = []
    for path in sorted(data_dir.glob("copy_*.csv")):
        for line, row in _rows(path):
            _need(row, ("bytes", "latency_ms"), path)
            where = f"{path} line {line}"
            size = _whole(row, "bytes", where)
            if size >= COPY_MIN_BYTES:
                out.append(Point("copy", (size,), _latency(row, where), path.name))
    for path in sorted(data_dir.glob("host_copy_*.csv")):
        for line, row in _rows(path):
            _need(row, ("direction", "host_memory", "bytes", "latency_ms"), path)
            where = f"{path} line {line}"
            if row["host_memory"] != "pinned":
                continue
            if row["direction"] not in ("h2d", "d2h"):
                raise UsageError(f"{where}: direction {row['direction']!r}; allowed: h2d, d2h")
            out.append(Point("host", (_whole(row, "bytes", where), row["direction"]),
                             _latency(row, where), path.name))
    return out


def predict_point(pt: Point, hw, params: CostParams) -> float:
    """Model seconds for one measured point on hardware *hw* (a GPU) with *params*."""
    if pt.family == "copy":
        return kernels.stream_seconds(2.0 * pt.shape[0], hw.mem_bw, params)   # read + write
    if pt.family == "host":
        return pt.shape[0] / (hw.host_link_bw * params.host_link_eff) + params.host_copy_latency_s
    if pt.family == "gemm":
        m, n, k, dtype = pt.shape
        b = nbytes(dtype)
        return kernels.gemm_seconds(m, n, k, b, 4 if b >= 4 else 2, hw.peak_flops[dtype],
                                    hw.mem_bw, hw.sm_count, params)
    bs, seq, heads, kvh, hd, kv = pt.shape
    peak = hw.peak_flops.get("bf16") or max(hw.peak_flops.values())
    if pt.family == "prefill":
        padded = bs * (-(-seq // kernels.BLOCK_M)) * kernels.BLOCK_M
        return kernels.prefill_seconds(bs, bs * seq, bs * kernels.prefill_pairs(seq, 0), padded, seq,
                                       heads, kvh, hd, nbytes(kv), peak, hw.mem_bw, hw.sm_count,
                                       params)
    return kernels.decode_seconds(bs, bs * seq, seq, heads, kvh, hd, nbytes(kv), peak, hw.mem_bw,
                                  hw.sm_count, params)


def errors(points, hw, params: CostParams) -> np.ndarray:
    """Signed relative errors ``predicted / measured - 1`` of *points*."""
    return np.array([predict_point(p, hw, params) / p.seconds - 1.0 for p in points])


def nelder_mead(f, x0: np.ndarray, step: float = 0.3, iters: int = 400, tol: float = 1e-5,
                tick=None):
    """Minimise *f* from *x0* with the Nelder–Mead simplex; returns the best point.

    *tick*: called with the number of iterations done (1 each, then the skipped rest)."""
    n = len(x0)
    simplex = [np.array(x0, float)] + [np.array(x0, float) + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    done = 0
    for done in range(iters):
        if tick is not None and done:
            tick(1)
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [best + 0.5 * (s - best) for s in simplex[1:]]
                values = [values[0]] + [f(s) for s in simplex[1:]]
    if tick is not None:
        tick(iters - done)
    i = int(np.argmin(values))
    return simplex[i], values[i]


def share_bounds(hw) -> tuple[float, float]:
    """``(lowest, highest)`` ``sm_bw_share`` a fit may give *hw*: at least 1 (all SMs together
    saturate DRAM) and at most what one of its SMs can draw (``hw.sm_bw_share_max``, from the
    device's measured per-SM DRAM draw; no upper bound when the device does not know it)."""
    high = float(getattr(hw, "sm_bw_share_max", math.inf))
    return min(1.0, high), high


def within_share_bounds(params: CostParams, bounds: tuple[float, float]) -> CostParams:
    """*params* with ``sm_bw_share`` moved into *bounds* (a fit's start)."""
    low, high = bounds
    share = min(max(params.sm_bw_share, low), high)
    return params if share == params.sm_bw_share else params.replace(sm_bw_share=share)


def _fit_stage(points, hw, params: CostParams, names, iters: int, tick=None) -> CostParams:
    if not points:
        if tick is not None:
            tick(iters)
        return params
    low, high = bounds = share_bounds(hw)
    params = within_share_bounds(params, bounds)
    x0 = np.log([getattr(params, n) for n in names])

    def loss(x):
        try:
            trial = params.replace(**{n: math.exp(v) for n, v in zip(names, x, strict=True)})
        except UsageError:
            return math.inf
        if any(getattr(trial, n) > 1.0 for n in names if n.endswith("_eff")):
            return math.inf
        if not low <= trial.sm_bw_share <= high:  # see share_bounds
            return math.inf
        preds = np.array([predict_point(p, hw, trial) for p in points])
        meas = np.array([p.seconds for p in points])
        return float(np.mean(np.minimum(np.abs(np.log(preds / meas)), LOSS_CAP)))

    best, _ = nelder_mead(loss, x0, iters=iters, tick=tick)
    return params.replace(**{n: math.exp(v) for n, v in zip(names, best, strict=True)})


def fit(points, hw, start: CostParams | None = None, iters: int = 300,
        joint_attention: bool = False, tick=None) -> CostParams:
    """Cost parameters for *hw* fitted to *points* (GEMM, then prefill, then decode).

    :param joint_attention: then refit :data:`ATTENTION_FIT` on the prefill and decode points
        together (one mean over both), starting from the staged result.
    :param tick: called with a count of optimiser iterations done (for a progress bar; the
        total is :func:`fit_iterations`).
    """
    params = start or CostParams()
    by = {f: [p for p in points if p.family == f] for f in FAMILIES}
    params = _fit_stage(by["gemm"], hw, params, GEMM_FIT, iters, tick)
    params = _fit_stage(by["prefill"], hw, params, PREFILL_FIT, iters, tick)
    params = _fit_stage(by["decode"], hw, params, DECODE_FIT, iters, tick)
    if joint_attention and by["prefill"] and by["decode"]:
        params = _fit_stage(by["prefill"] + by["decode"], hw, params, ATTENTION_FIT, iters, tick)
    if by["copy"]:
        params = _fit_stage(by["copy"], hw, params, COPY_FIT, iters, tick)
    if by["host"]:
        params = _fit_stage(by["host"], hw, params, HOST_FIT, iters, tick)
    return params


def fitted_names(points) -> tuple:
    """The parameters :func:`fit` fits on *points*."""
    families = {p.family for p in points}
    return (GEMM_FIT + PREFILL_FIT + DECODE_FIT + (COPY_FIT if "copy" in families else ())
            + (HOST_FIT if "host" in families else ()))


def fit_iterations(points, iters: int, joint_attention: bool = False) -> int:
    """The optimiser iterations :func:`fit` reports through its *tick*, at most."""
    families = {p.family for p in points}
    joint = joint_attention and {"prefill", "decode"} <= families
    return iters * (3 + joint + ("copy" in families) + ("host" in families))


def summarize(points, hw, params: CostParams) -> dict:
    """Median and P90 absolute percentage error per family."""
    out = {}
    for family in FAMILIES:
        subset = [p for p in points if p.family == family]
        if subset:
            err = np.abs(errors(subset, hw, params)) * 100
            out[family] = {"points": len(subset), "median_ape": round(float(np.median(err)), 2),
                           "p90_ape": round(float(np.percentile(err, 90)), 2)}
    return out

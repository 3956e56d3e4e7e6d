"""Efficiencies that carry across GPU generations: the profile of GPUs known by datasheet only.

A GPU the catalog lacks (a ``compute_devices`` entry whose figures match no catalog GPU, of
no architecture that has a calibration of its own) cannot borrow one GPU's calibration:
the A100 profile carries SGLang's A100 decode kernel (49 % of HBM bandwidth) and an on-chip
feed tied to the A100's ratio of tensor peak to DRAM bandwidth, and it priced a datasheet
H100 22-83 % slow on vLLM TPOT. Instead, one set of parameters is fitted on the measured
tables of *every* GPU at once (:func:`fit_pooled`), each GPU entering only through its
datasheet figures (dense peak, DRAM bandwidth, SM count), so that what is fitted is what
stays constant from one generation to the next:

* GEMM, attention and streaming efficiencies as fractions of the datasheet peaks;
* the on-chip operand feed as **bytes per tensor FLOP** (:data:`CARRIED`) rather than as a
  multiple of DRAM bandwidth: each generation widened its shared-memory and L2 paths with
  its tensor cores (Hopper's per-SM dense rate doubled Ampere's while HBM grew 1.6x), so
  a feed proportional to the tensor peak is what carries (fitted per GPU, the A100 and
  H100 profiles give 0.020 and 0.026 B/FLOP, against 3.1x and 7.6x DRAM bandwidth);
* fixed per-kernel overheads, bounded below by :data:`MIN_OVERHEAD_S`. They belong to how
  a table was timed more than to the GPU (NVIDIA aisimulate's back-to-back timing shows a
  ~2.5 us GEMM floor, isolated PyTorch calls with CUDA events more), so
  :data:`HARNESS_PARAMS` are fitted per **harness** (:attr:`Table.harness`); a GPU left out
  is predicted with its harness's overheads as fitted on the other GPUs, and the shipped
  profile keeps the engine harness's (:data:`ENGINE_HARNESS`). Each harness's overheads are
  fitted on the fastest rows of its tables (:data:`SMALLEST`), where they are most of the
  time, and the efficiencies on the slower half of every table, where they decide it: fitted
  on every row at once, the two traded off (a fit without the H100 gave the engine harness
  18 us of fixed cost per attention kernel, against 12 us measured for the smallest ones, and
  the Vidur harness 72 + 31 us);
* the attention kernels' prefill efficiency and decode cost per CTA
  (:data:`HARNESS_KERNEL_PARAMS`), fitted per harness too: a harness times its own kernels
  (Vidur's paged-KV attention wrapper reaches a third of the engines' fraction of peak on
  the same A100), and the shipped profile keeps the engine harness's;
* ``sm_bw_share``, one value for every GPU, at most what the per-SM DRAM draw of each GPU
  fitted allows (:func:`pooled_share_bounds`);
* tables timed on zero-filled operands (:attr:`Table.zero_operands`) are predicted with
  :data:`ZERO_OPERAND_SPEEDUP`: tensor cores run cooler on zeros and hold higher clocks, so
  such tables overstate real GEMMs. The fitted efficiencies are those of random operands;
* a fixed cost per prefill CTA (``prefill_cta_s``, one query block x head), fitted with the
  prefill efficiencies: batches of many short sequences pay it beyond their FLOPs;
* prefill CTAs priced in whole waves over the SMs (``prefill_waves`` 1, not fitted): left
  out, a fit without the A100 priced its mid-size prompts 20-27 % fast (256 CTAs of a
  1,024-token prompt are 2.4 waves of 108 SMs, and run in 3).

Each table weighs the same in the loss, whatever its number of rows. How well this
transfers is measured leave-one-GPU-out (:func:`leave_one_out`: fit without GPU X,
predict X from its datasheet) by ``benchmarks/fidelity_kernels.py``, which also refits
the shipped profile (``data/profiles/cross_generation.json``) with ``--fit-cross-generation``.

>>> round(onchip_ratio(0.0198, peak=989.4e12, mem_bw=3350e9), 2)   # the H100's datasheet
5.85
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from labsim.errors import UsageError

from labsim_gpus.calibrate import (
    DECODE_FIT,
    GEMM_FIT,
    LOSS_CAP,
    PREFILL_FIT,
    Point,
    errors,
    nelder_mead,
    predict_point,
    share_bounds,
    within_share_bounds,
)
from labsim_gpus.dtypes import nbytes
from labsim_gpus.kernels import DECODE_KERNELS
from labsim_gpus.params import CostParams
from labsim_gpus.profiles import CROSS_GENERATION_PROFILE

#: the shipped profile's file name in ``data/profiles``
PROFILE_FILE = CROSS_GENERATION_PROFILE
#: parameters stored per datasheet quantity instead of as CostParams values
CARRIED = ("onchip_bytes_per_flop",)
#: the fixed overheads fitted once per harness
HARNESS_PARAMS = ("kernel_overhead_s", "attn_overhead_s")
#: the attention-kernel parameters fitted once per harness: the attention kernels a harness
#: times are its own. Vidur's profiles time sarathi-serve's paged-KV attention wrapper (page = 16
#: tokens, one sequence per prefill call): its FlashAttention-2 prefill on the A100 reached 30-60
#: TFLOP/s causal without a cached prefix (10-19 % of peak; benchmarks/data/anchors/
#: vidur_a100_llama2_70b_tp2) and its FlashInfer prefill on the A30 20 %, where the engines'
#: kernels reach ~60 %; its smallest decode calls cost 13-17 us (on the A30 FlashInfer's prefill
#: kernel runs the decode, on the A100 FlashAttention-2's paged-KV kernel), more than the engines'
#: per-CTA cost explains. So a harness's prefill reaches its own fraction of the peak and its
#: decode pays its own fixed cost per CTA.
HARNESS_KERNEL_PARAMS = ("attn_compute_eff", "decode_cta_s")
#: every parameter fitted once per harness
PER_HARNESS = HARNESS_PARAMS + HARNESS_KERNEL_PARAMS
#: the harness whose per-harness parameters the shipped profile keeps: the engines' own kernels
#: timed back to back (NVIDIA aisimulate's tables)
ENGINE_HARNESS = "aisimulate"
#: compute-bound GEMM throughput on zero-filled operands over random ones: 1 / 0.86, the
#: mean ratio of six large bf16 GEMMs timed both ways on an H100-SXM
#: (benchmarks/data/h100_torch/gemm_operands_h100_sxm_torch.csv; 0.83 on the H200). It carries
#: to Ampere: an 8192^3 bf16 matmul on an A100 ran at 257 TFLOP/s on randn operands and 295 on
#: zeros, 0.87 (H. He, "Strangely, Matrix Multiplications on GPUs Run Faster When Given
#: 'Predictable' Data!", thonking.ai, 2024)
ZERO_OPERAND_SPEEDUP = 1 / 0.86
#: no fitted overhead goes below this (a kernel replayed from a CUDA graph still costs ~1 us)
MIN_OVERHEAD_S = 1e-6
#: the pooled fit's stages: the CostParams names fitted in each, with the on-chip feed
#: fitted as ``onchip_bytes_per_flop`` in place of ``onchip_bw_ratio``
STAGES = (
    ("gemm", tuple("onchip_bytes_per_flop" if n == "onchip_bw_ratio" else n for n in GEMM_FIT)),
    ("prefill", PREFILL_FIT + ("prefill_cta_s",)),
    ("decode", DECODE_FIT),
)


@dataclass(frozen=True)
class Table:
    """One GPU's measured kernels: *gpu* (a labsim_gpus GPU with its datasheet figures),
    the rows as calibrate :class:`~labsim_gpus.calibrate.Point` s, and labels."""

    gpu_name: str
    label: str
    gpu: object
    points: tuple
    #: how the rows were timed (``aisimulate``, ``torch``, ``vidur``): the group of :data:`PER_HARNESS`
    harness: str = ENGINE_HARNESS
    #: the GEMMs were timed on zero-filled operands
    zero_operands: bool = False
    #: the decode kernel the rows ran, when its side kernels are priced
    #: (:data:`labsim_gpus.kernels.DECODE_KERNELS`: ``flash-attention-2``, ``flashinfer``)
    decode_kernel: str = ""


def tensor_peak(gpu) -> float:
    """The dense 16-bit tensor peak (bf16, else fp16) in FLOP/s."""
    peaks = gpu.peak_flops
    return peaks.get("bf16") or peaks.get("fp16") or max(peaks.values())


def onchip_ratio(bytes_per_flop: float, peak: float, mem_bw: float) -> float:
    """``onchip_bw_ratio`` of a device whose on-chip feed is *bytes_per_flop* of its peak."""
    return bytes_per_flop * peak / mem_bw


def params_for(gpu, shared: CostParams, bytes_per_flop: float) -> CostParams:
    """The cost parameters that price *gpu*: *shared* with the on-chip feed of its datasheet."""
    return shared.replace(onchip_bw_ratio=onchip_ratio(bytes_per_flop, tensor_peak(gpu), gpu.mem_bw))


def table_params(table: Table, shared: CostParams, bytes_per_flop: float,
                 per_harness: dict) -> CostParams:
    """The parameters that predict *table*'s rows: :func:`params_for` its GPU, with its
    harness's :data:`PER_HARNESS` values (when fitted; else *shared*'s, the engine harness's),
    its operands' speed-up and its decode kernel's side kernels."""
    params = params_for(table.gpu, shared, bytes_per_flop)
    changes = dict(per_harness.get(table.harness, {}))
    if table.zero_operands:
        changes["gemm_operand_derate"] = shared.gemm_operand_derate * ZERO_OPERAND_SPEEDUP
    if table.decode_kernel:
        changes.update(DECODE_KERNELS[table.decode_kernel])
    return params.replace(**changes) if changes else params


def roofline_seconds(point: Point, gpu) -> float:
    """The least time the datasheet allows a GEMM *point*: its FLOPs at the dense tensor peak
    of its dtype or its operands and result (read and written once) at the DRAM bandwidth,
    whichever is longer; 0 for the other families."""
    if point.family != "gemm":
        return 0.0
    m, n, k, dtype = point.shape
    size = nbytes(dtype)
    return max(2.0 * m * n * k / gpu.peak_flops[dtype], size * (m * k + n * k + m * n) / gpu.mem_bw)


def physical_points(points, gpu) -> tuple:
    """*points* less those measured faster than *gpu*'s datasheet allows
    (:func:`roofline_seconds`): a timer that caught only part of the work (Vidur's A30 profile
    times 76 QKV projections of 200-3,968 tokens at 1.7-2.4 us, 20-370x faster than 165 TFLOP/s
    allows), not a kernel the model can learn from."""
    return tuple(p for p in points if p.seconds >= roofline_seconds(p, gpu))


def pooled_share_bounds(tables) -> tuple[float, float]:
    """The ``sm_bw_share`` bounds of a pooled fit: one share prices every table's GPU, so it
    must be within each GPU's bounds (:func:`labsim_gpus.calibrate.share_bounds`): at most
    the lowest of their per-SM DRAM draws allows."""
    highs = [share_bounds(t.gpu)[1] for t in tables]
    high = min(highs, default=math.inf)
    return min(1.0, high), high


def _valid(trial: CostParams, names, bounds: tuple[float, float]) -> bool:
    if any(getattr(trial, n) > 1.0 for n in names if n.endswith("_eff")):
        return False
    if not bounds[0] <= trial.sm_bw_share <= bounds[1]:
        return False
    return all(getattr(trial, n) >= MIN_OVERHEAD_S for n in names if n.endswith("_s"))


def _valid_per_harness(values: dict) -> bool:
    """One harness's :data:`PER_HARNESS` values are physical: fixed costs (``*_s``) at least
    :data:`MIN_OVERHEAD_S`, efficiencies at most 1."""
    return all(v >= MIN_OVERHEAD_S if n.endswith("_s") else v <= 1.0 for n, v in values.items())


@dataclass(frozen=True)
class Fit:
    """The result of :func:`fit_pooled`."""

    #: the shared parameters (:data:`PER_HARNESS`: the engine harness's, else the first harness's)
    params: CostParams
    #: the on-chip feed in bytes per dense tensor FLOP
    onchip_bytes_per_flop: float
    #: ``{harness: {name: value}}`` of :data:`PER_HARNESS`
    per_harness: dict
    #: the loss of the last stage on the tables fitted (the decode stage's, or the joint one's)
    loss: float = math.nan
    #: with a joint stage: the result from each start, in start order (this fit among them)
    starts: tuple = ()

    @property
    def overheads(self) -> dict:
        """``{harness: {name: seconds}}`` of :data:`HARNESS_PARAMS`."""
        return {h: {n: v[n] for n in HARNESS_PARAMS} for h, v in self.per_harness.items()}

    @property
    def kernel_params(self) -> dict:
        """``{harness: {name: value}}`` of :data:`HARNESS_KERNEL_PARAMS`."""
        return {h: {n: v[n] for n in HARNESS_KERNEL_PARAMS} for h, v in self.per_harness.items()}

    def for_table(self, table: Table) -> CostParams:
        return table_params(table, self.params, self.onchip_bytes_per_flop, self.per_harness)


def fit_pooled(tables, iters: int = 250, start: CostParams | None = None,
               bytes_per_flop: float = 0.02, joint_starts: int = 0,
               joint_iters: int | None = None, overheads_from_smallest: bool = True) -> Fit:
    """The shared parameters fitted on every table at once (see the module docstring).

    The loss is the mean over tables of each table's mean capped absolute log error, fitted
    family by family as :func:`labsim_gpus.calibrate.fit` does; :data:`PER_HARNESS` are
    fitted once per harness, :data:`HARNESS_KERNEL_PARAMS` first alone with an uncapped loss.

    :param overheads_from_smallest: in the stages that fit :data:`HARNESS_PARAMS`, fit each
        harness's overheads on the fastest rows of its tables (:data:`SMALLEST`) and the
        efficiencies on the slower half of every table, the overheads then once more, instead
        of everything on every row.
    :param joint_starts: then refit every parameter at once (:data:`JOINT_FIT`) on all
        families, the loss a mean over every (table, family), from this many starts: the
        staged result and ``joint_starts - 1`` fixed perturbations of it
        (:data:`JOINT_SPREAD`, seeds 1, 2, ...). The lowest loss wins; the others are kept in
        :attr:`Fit.starts` (each start's result, in start order) to show how far the held-out
        errors depend on the start.
    """
    bounds = pooled_share_bounds(tables)
    shared = within_share_bounds(start or CostParams(), bounds)
    if shared.prefill_cta_s <= 0:       # the datasheet model's 0 has no logarithm to start from
        shared = shared.replace(prefill_cta_s=MIN_OVERHEAD_S)
    if not shared.prefill_waves:        # prefill CTAs run in whole waves (a fact, not fitted)
        shared = shared.replace(prefill_waves=1.0)
    bpf = bytes_per_flop
    harnesses = list(dict.fromkeys(t.harness for t in tables))
    per_harness = {h: {n: getattr(shared, n) for n in PER_HARNESS} for h in harnesses}
    state = (shared, bpf, per_harness)
    loss = math.nan
    for family, stage_names in STAGES:
        heads = [n for n in stage_names if n in HARNESS_PARAMS]
        # uncapped first: a harness whose kernels sit far from the start (Vidur's prefill at a
        # third of the engines' efficiency) has every row beyond LOSS_CAP, where the capped
        # loss is flat
        kernel = [n for n in stage_names if n in HARNESS_KERNEL_PARAMS]
        if kernel:
            stage = _Stage(tables, (family,), kernel, harnesses, bounds,
                           rows=_largest if heads and overheads_from_smallest else None,
                           cap=math.inf)
            if stage.subsets:
                state, loss = stage.run(state, stage.x0(state), iters)
        if not (overheads_from_smallest and heads):
            stage = _Stage(tables, (family,), stage_names, harnesses, bounds)
            if stage.subsets:
                state, loss = stage.run(state, stage.x0(state), iters)
            continue
        effs = [n for n in stage_names if n not in HARNESS_PARAMS]
        # the attention overhead is paid by prefill and decode kernels alike
        fixed_by = ("prefill", "decode") if family == "prefill" else (family,)
        # uncapped: a start far off (an isolated call's overhead) must still feel the slope
        smallest = _Stage(tables, fixed_by, heads, harnesses, bounds, rows=_smallest,
                          cap=math.inf)
        largest = _Stage(tables, (family,), effs, harnesses, bounds, rows=_largest)
        for stage in (smallest, largest, smallest):
            if stage.subsets:
                state, loss = stage.run(state, stage.x0(state), iters)
    fit = _fit_of(state, tables, loss)
    if joint_starts < 1:
        return fit
    stage = _Stage(tables, FAMILIES, JOINT_FIT, harnesses, bounds)
    x_staged = stage.x0(state)
    results = []
    for seed in range(joint_starts):
        x0 = x_staged if seed == 0 else stage.perturbed(
            x_staged, np.random.default_rng(seed).normal(0.0, JOINT_SPREAD, len(x_staged)))
        found, found_loss = stage.run(state, x0, joint_iters or 2 * iters, JOINT_RESTARTS)
        results.append(_fit_of(found, tables, found_loss))
    best = min(results, key=lambda f: f.loss)
    return dataclasses.replace(best, starts=tuple(results))


#: with ``overheads_from_smallest``: the fraction of each table's rows of a family, fastest
#: first, that fix its harness's fixed overheads (at least :data:`SMALLEST_MIN` rows)
SMALLEST = 0.1
SMALLEST_MIN = 3


def _smallest(points) -> list:
    """The fastest :data:`SMALLEST` of *points*: where a fixed overhead is most of the time."""
    ranked = sorted(points, key=lambda p: p.seconds)
    return ranked[:max(SMALLEST_MIN, math.ceil(SMALLEST * len(ranked)))]


def _largest(points) -> list:
    """*points* at or above their median time: where the efficiencies decide the time."""
    cut = float(np.median([p.seconds for p in points]))
    return [p for p in points if p.seconds >= cut]


#: the families of kernels, in fitting order
FAMILIES = ("gemm", "prefill", "decode")
#: every parameter the stages fit, refitted at once by ``fit_pooled(joint_starts=...)``
JOINT_FIT = tuple(dict.fromkeys(n for _, names in STAGES for n in names))
#: standard deviation, in log space, of the joint stage's perturbed starts (±30 %)
JOINT_SPREAD = 0.3
#: fresh simplexes the joint stage may restart from (see ``_Stage.run``)
JOINT_RESTARTS = 4


def _family_of(name: str) -> str:
    """The family whose stage fits parameter *name* (the first, in :data:`STAGES` order)."""
    return next(family for family, names in STAGES if name in names)


def _fit_of(state, tables, loss: float) -> Fit:
    """The :class:`Fit` of *state*. A parameter of :data:`HARNESS_KERNEL_PARAMS` whose family
    no table of a harness measured was never fitted for it: it takes the engine harness's."""
    shared, bpf, per_harness = state
    harnesses = list(per_harness)
    engine = per_harness.get(ENGINE_HARNESS, per_harness[harnesses[0]])
    measured = {(t.harness, p.family) for t in tables for p in t.points}
    per_harness = {h: {n: v if n in HARNESS_PARAMS or (h, _family_of(n)) in measured else engine[n]
                       for n, v in values.items()} for h, values in per_harness.items()}
    return Fit(shared.replace(**engine), bpf, per_harness, loss)


class _Stage:
    """One Nelder–Mead stage of :func:`fit_pooled`: *names* fitted on the rows of *families*
    of every table (the loss: mean over (table, family) of the mean capped |log error|)."""

    def __init__(self, tables, families, stage_names, harnesses, bounds, rows=None,
                 cap: float = LOSS_CAP):
        self.cap = cap
        self.names = [n for n in stage_names if n not in PER_HARNESS]
        self.bounds = bounds
        self.subsets = []
        for family in families:
            for t in tables:
                pts = [p for p in t.points if p.family == family]
                if pts and rows is not None:
                    pts = rows(pts)
                if pts:
                    self.subsets.append((t, pts, np.array([p.seconds for p in pts])))
        # a harness with no rows in this stage has nothing to fit its parameters on
        self.keys = self.names + [f"{n}@{h}" for n in stage_names if n in PER_HARNESS
                                  for h in harnesses if any(t.harness == h for t, _, _ in self.subsets)]

    def x0(self, state) -> np.ndarray:
        shared, bpf, overheads = state
        return np.log([bpf if k == "onchip_bytes_per_flop" else
                       overheads[k.split("@")[1]][k.split("@")[0]] if "@" in k else
                       getattr(shared, k) for k in self.keys])

    def perturbed(self, x: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """*x* moved by *noise* (log space), kept where the loss is finite: efficiencies at
        most 0.98, ``sm_bw_share`` within its bounds, overheads at least MIN_OVERHEAD_S."""
        out = x + noise
        for i, key in enumerate(self.keys):
            name = key.split("@")[0]
            if name.endswith("_eff"):
                out[i] = min(out[i], math.log(0.98))
            elif name == "sm_bw_share":
                out[i] = min(max(out[i], math.log(self.bounds[0])), math.log(self.bounds[1]))
            elif name.endswith("_s"):
                out[i] = max(out[i], math.log(MIN_OVERHEAD_S))
        return out

    def unpack(self, x, state):
        """``(shared, bytes per FLOP, overheads)`` of the point *x*. ``sm_bw_share`` is
        projected onto its bounds rather than rejected beyond them: its best value often lies
        on the lower bound, and a simplex that meets a wall of infinite loss there stalls short
        of it (the decode stage without the A100 stopped at a share of 2.3, its loss 9 % above
        that at the bound)."""
        shared, bpf, overheads = state
        values = {n: math.exp(v) for n, v in zip(self.keys, x, strict=True)}
        if "sm_bw_share" in values:
            values["sm_bw_share"] = min(max(values["sm_bw_share"], self.bounds[0]), self.bounds[1])
        trial = shared.replace(**{n: values[n] for n in self.names if n not in CARRIED})
        heads = {h: dict(v) for h, v in overheads.items()}
        for key, value in values.items():
            if "@" in key:
                name, harness = key.split("@", 1)
                heads[harness][name] = value
        return trial, values.get("onchip_bytes_per_flop", bpf), heads

    def loss(self, x, state) -> float:
        try:
            trial, trial_bpf, heads = self.unpack(x, state)
        except UsageError:
            return math.inf
        if not _valid(trial, self.names, self.bounds) or not all(
                _valid_per_harness(values) for values in heads.values()):
            return math.inf
        per_subset = []
        for table, pts, meas in self.subsets:
            p = table_params(table, trial, trial_bpf, heads)
            pred = np.array([predict_point(pt, table.gpu, p) for pt in pts])
            per_subset.append(np.mean(np.minimum(np.abs(np.log(pred / meas)), self.cap)))
        return float(np.mean(per_subset))

    def run(self, state, x0, iters: int, restarts: int = 0):
        """``(state, loss)`` after Nelder–Mead from *x0*, then from its best point with a fresh
        simplex up to *restarts* times while that still lowers the loss by 1e-4 (a simplex
        collapsed in many dimensions stops short of the minimum)."""
        best, value = nelder_mead(lambda x: self.loss(x, state), x0, iters=iters)
        for _ in range(restarts):
            again, again_value = nelder_mead(lambda x: self.loss(x, state), best, iters=iters)
            improved = value - again_value
            if again_value < value:
                best, value = again, again_value
            if improved < 1e-4:
                break
        return self.unpack(best, state), value


def errors_by_family(table: Table, params: CostParams) -> dict:
    """``{family: (points, median %, P90 %)}`` of |predicted / measured − 1| on *table*
    priced with *params*."""
    out = {}
    for family in ("gemm", "prefill", "decode"):
        pts = [p for p in table.points if p.family == family]
        if pts:
            err = np.abs(errors(pts, table.gpu, params)) * 100
            out[family] = (len(pts), float(np.median(err)), float(np.percentile(err, 90)))
    return out


def leave_one_out(tables, iters: int = 250) -> dict:
    """For each GPU: the pooled fit on every *other* GPU's tables, scored on its own.

    Returns ``{gpu_name: {table label: errors_by_family}}``.
    """
    out: dict = {}
    for name in dict.fromkeys(t.gpu_name for t in tables):
        fit = fit_pooled([t for t in tables if t.gpu_name != name], iters=iters)
        out[name] = {t.label: errors_by_family(t, fit.for_table(t))
                     for t in tables if t.gpu_name == name}
    return out


def leave_one_out_starts(tables, joint_starts: int, iters: int = 250) -> dict:
    """:func:`leave_one_out` with the joint stage from *joint_starts* fixed starts
    (:func:`fit_pooled`): ``{gpu_name: {table label: (errors of the lowest-loss start,
    [errors of each start])}}``, to show how far a held-out figure depends on the start."""
    out: dict = {}
    for name in dict.fromkeys(t.gpu_name for t in tables):
        fit = fit_pooled([t for t in tables if t.gpu_name != name], iters=iters,
                         joint_starts=joint_starts)
        out[name] = {t.label: (errors_by_family(t, fit.for_table(t)),
                               [errors_by_family(t, f.for_table(t)) for f in fit.starts])
                     for t in tables if t.gpu_name == name}
    return out


__all__ = ["CARRIED", "ENGINE_HARNESS", "HARNESS_KERNEL_PARAMS", "HARNESS_PARAMS", "MIN_OVERHEAD_S",
           "PER_HARNESS", "PROFILE_FILE", "ZERO_OPERAND_SPEEDUP",
           "Fit", "Point", "Table", "errors_by_family", "fit_pooled", "leave_one_out",
           "leave_one_out_starts", "physical_points", "pooled_share_bounds", "roofline_seconds",
           "onchip_ratio", "params_for", "table_params", "tensor_peak"]

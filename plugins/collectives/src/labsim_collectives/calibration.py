"""Fitting the collective cost model to measured nccl-tests tables (numpy only).

The model of one NCCL collective on a node's NVLink, for protocol *p*
(LL, LL128, Simple), is the alpha-beta-gamma form of
``../shared/data/collectives_reference.md`` §2::

    t_p = base_p + steps · α_p + bytes_per_link / (B · eff_p) + γ · S

``steps`` and ``bytes_per_link`` come from the algorithm (ring all-reduce:
2(n-1) steps and 2(n-1)/n·S bytes per GPU link), ``B`` is the GPU's NVLink
bandwidth per direction, ``γ = 2 / mem_bw`` is one read and one write of the
buffer in local HBM (not fitted), and NCCL runs the protocol with the least
predicted time, so the model is ``min_p t_p``. :func:`fit_nccl` finds
``base_p``, ``α_p`` and ``eff_p`` by alternating two linear steps: assign
each measurement to the protocol that predicts it fastest, then solve each
protocol's relative-error least squares (``t_p`` is linear in ``base_p``,
``α_p`` and ``1/eff_p``). Small messages fix the latencies and large ones
the bandwidth fraction.

>>> from labsim_collectives.calibration import Sample, fit_nccl
>>> # fit_nccl(samples, link_bw=300e9, mem_bw=2039e9) -> {"LL": ProtocolParams(...), ...}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("LL", "LL128", "Simple")


@dataclass(frozen=True)
class ProtocolParams:
    """One protocol on one class of link: launch ``base`` (s), per-step ``alpha`` (s), the
    fraction ``eff`` of the link bandwidth it achieves and its pipeline ``fill`` (bytes: until a
    message fills the pipeline its transfer takes as long again; past it, a constant ``fill``
    more — 0 where the fit absorbs it)."""

    base: float
    alpha: float
    eff: float
    fill: float = 0.0  # bytes: pipeline fill, each link direction moves min(load, fill) more


@dataclass(frozen=True)
class Sample:
    """One measurement: ``steps`` and ``link_bytes`` of the algorithm, total ``nbytes`` S and the
    measured ``seconds``."""

    steps: float
    link_bytes: float
    nbytes: float
    seconds: float


def steps_and_bytes(op: str, n: int, nbytes: float) -> tuple[float, float]:
    """Ring (direct for all-to-all) step count and bytes per GPU link of a single-node NCCL call."""
    if op in ("all_reduce", "allreduce"):
        return 2 * (n - 1), 2 * (n - 1) / n * nbytes
    if op in ("all_gather", "reduce_scatter", "allgather", "reducescatter"):
        return n - 1, (n - 1) / n * nbytes
    if op in ("alltoall", "all_to_all"):
        return 1, (n - 1) / n * nbytes
    raise ValueError(f"no single-node step model for {op!r}")


def predict(params: dict[str, ProtocolParams], s: Sample, link_bw: float, gamma: float) -> float:
    """The model's seconds for sample *s* (the fastest protocol)."""
    return min(_one(p, s, link_bw, gamma) for p in params.values())


def _one(p: ProtocolParams, s: Sample, link_bw: float, gamma: float) -> float:
    return p.base + s.steps * p.alpha + s.link_bytes / (link_bw * p.eff) + gamma * s.nbytes


def fit_nccl(
    samples: Iterable[Sample], link_bw: float, mem_bw: float, iterations: int = 30
) -> dict[str, ProtocolParams]:
    """Fit ``base``, ``alpha``, ``eff`` per protocol to *samples* measured on links of *link_bw*."""
    samples = list(samples)
    if len(samples) < 9:
        raise ValueError("fit_nccl needs at least 9 measurements")
    gamma = 2.0 / mem_bw
    # start from NCCL's own tuning constants (src/graph/tuning.cc: baseLat and NVLink hwLat,
    # ring) and the LL / LL128 payload fractions (8 of 16 bytes, 120 of 128 bytes)
    params = {
        "LL": ProtocolParams(6.6e-6, 0.6e-6, 0.5 * 0.1),
        "LL128": ProtocolParams(14e-6, 1.9e-6, 0.94 * 0.5),
        "Simple": ProtocolParams(8.4e-6 + 20e-6, 3.4e-6, 0.9),
    }
    x = np.array([[1.0, s.steps, s.link_bytes / link_bw] for s in samples])
    y = np.array([s.seconds - gamma * s.nbytes for s in samples])
    w = 1.0 / np.array([s.seconds for s in samples])
    for _ in range(iterations):
        times = np.array([[_one(params[p], s, link_bw, gamma) for p in PROTOCOLS] for s in samples])
        choice = times.argmin(axis=1)
        new = {}
        for i, proto in enumerate(PROTOCOLS):
            rows = choice == i
            if rows.sum() < 3:
                new[proto] = params[proto]
                continue
            coef = _nonneg_lstsq(x[rows] * w[rows, None], y[rows] * w[rows])
            inv_eff = max(coef[2], 1.0)  # a protocol cannot beat the wire
            new[proto] = ProtocolParams(coef[0], coef[1], 1.0 / inv_eff)
        if new == params:
            break
        params = new
    return params


def _nonneg_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient ≥ 0 (drop negative ones and refit; 3 unknowns)."""
    active = list(range(a.shape[1]))
    while True:
        coef = np.zeros(a.shape[1])
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        coef[active] = sol
        negative = [j for j in active if coef[j] < 0]
        if not negative:
            return coef
        active.remove(min(negative, key=lambda j: coef[j]))


def samples_from_nccl_rows(
    rows: Iterable[dict], ops=("all_reduce", "all_gather", "reduce_scatter", "alltoall")
) -> list[Sample]:
    """Samples from nccl-tests rows with ``op_name``, ``num_gpus``, ``message_bytes``, ``latency_ms``
    (the layout of ``calibration/a100_sxm/nccl_a100_sxm.csv``)."""
    out = []
    for row in rows:
        if row["op_name"] not in ops:
            continue
        n, nbytes = int(row["num_gpus"]), float(row["message_bytes"])
        steps, link_bytes = steps_and_bytes(row["op_name"], n, nbytes)
        out.append(Sample(steps, link_bytes, nbytes, float(row["latency_ms"]) * 1e-3))
    return out

"""Recognising a catalog GPU from the datasheet figures written in an experiment file.

A seed-style ``compute_devices`` entry describes its GPU by numbers (peak TFLOP/s,
memory bandwidth, memory size, SM count) rather than by name. When those numbers are
a catalog GPU's (each within :data:`TOLERANCE`), the entry is that GPU and is priced
with its calibrated profile, exactly as ``preset: H100-SXM`` would be; otherwise it
stays a GPU of its own, priced from its datasheet. The H100's datasheet
(989 TFLOP/s bf16, 3,350 GB/s, 80 GB, 132 SMs) thus gets the H100-SXM calibration.

>>> matching_preset({"peak_tflops": {"bf16": 989}, "memory_gbps": 3350})["name"]
'H100-SXM'
"""

from __future__ import annotations

from labsim_gpus.catalog import PRESETS
from labsim_gpus.dtypes import canonical

#: Relative difference allowed between a written figure and the catalog's (rounding: 989 for 989.4).
TOLERANCE = 0.01

#: Relative difference under which a GPU that matches no catalog entry is reported as close to one.
NEAR = 0.05

#: Keys whose values must be a catalog GPU's for the entry to match it (peaks and bandwidth
#: are required; size and SMs are compared when written).
MATCHED_KEYS = ("peak_tflops", "memory_gbps", "memory_capacity_bytes", "processing_units", "arch")


def _close(value, reference, tolerance: float = TOLERANCE) -> bool:
    try:
        value, reference = float(value), float(reference)
    except (TypeError, ValueError):
        return False
    return reference > 0 and abs(value - reference) <= tolerance * reference


def _fits(spec: dict, entry: dict, tolerance: float = TOLERANCE) -> bool:
    peaks = spec["peak_tflops"]
    for key, value in peaks.items():
        try:
            dtype = canonical(key)
        except Exception:      # an unknown precision: customize() reports it
            return False
        if not _close(value, entry["peak_tflops"].get(dtype, 0), tolerance):
            return False
    if not _close(spec["memory_gbps"], entry["mem_bw_gbps"], tolerance):
        return False
    if "memory_capacity_bytes" in spec:   # "80 GB" written as 80e9 bytes or as 80 GiB
        size = spec["memory_capacity_bytes"]
        gb = entry["memory_gb"]
        if not (_close(size, gb * 1e9, tolerance) or _close(size, gb * 2**30, tolerance)):
            return False
    if "processing_units" in spec and spec["processing_units"] != entry["sm_count"]:
        return False
    if "arch" in spec and str(spec["arch"]).lower() != entry["arch"]:
        return False
    return True


def matching_preset(spec: dict, tolerance: float = TOLERANCE) -> dict | None:
    """The catalog entry whose datasheet *spec* restates (each figure within *tolerance*),
    or None.

    *spec* must give ``peak_tflops`` and ``memory_gbps``; when several entries fit, the
    one whose bandwidth is closest wins.
    """
    if not isinstance(spec.get("peak_tflops"), dict) or not spec["peak_tflops"]:
        return None
    if "memory_gbps" not in spec:
        return None
    fits = [entry for entry in PRESETS if _fits(spec, entry, tolerance)]
    if not fits:
        return None
    return min(fits, key=lambda e: abs(float(spec["memory_gbps"]) - e["mem_bw_gbps"]))


def near_preset(spec: dict) -> dict | None:
    """A catalog entry *spec* is close to (each figure within :data:`NEAR`) without matching
    it: worth a warning, since it may be that GPU written with rounded or other figures."""
    if matching_preset(spec) is not None:
        return None
    return matching_preset(spec, NEAR)


__all__ = ["NEAR", "TOLERANCE", "matching_preset", "near_preset"]

"""Devices written out in an experiment file: the inline fields and how they apply.

A ``hardware_profile.compute_devices`` entry (seed-001 style) starts from a
registered device (``device_type``, default the generic ``GPU``) or from
``preset``, optionally loads a calibration ``profile``, then overrides
datasheet fields::

    compute_devices:
      - device_id: gpu0
        device_type: GPU
        peak_tflops: {fp16: 312, int8: 624}     # dense TFLOP/s (TOP/s) per precision
        memory_capacity_bytes: 80_000_000_000
        memory_gbps: 2000                         # GB/s
        processing_units: 108                     # SMs
      - device_id: gpu1
        preset: H100-SXM
        price_per_hour: 2.1

A ``profile`` path is read relative to the current directory.

An entry of the generic ``GPU`` type whose datasheet figures are a catalog GPU's
(:mod:`labsim_gpus.match`) becomes that GPU, with its calibrated profile and its catalog
figures (``80_000_000_000`` bytes written for "80 GB" is the catalog's 80 GB, as the driver
shows it); other fields (price, links, name) still apply. One that matches no catalog GPU
is **datasheet-only**: priced, with its own figures, by the profile of its ``arch`` when
one ships for that generation (``hopper``: the H100-SXM calibration), else by the
cross-generation profile (:mod:`labsim_gpus.crossgen`), fitted on every measured GPU at
once. ``cost_params`` apply on top. The device's :meth:`~labsim_gpus.GPU.pricing` says
which profile priced it and how.
"""

from __future__ import annotations

from labsim.log import get_logger
from labsim.errors import UsageError

from labsim_gpus.dtypes import _ALIASES, DTYPE_BYTES, canonical
from labsim_gpus.params import FIELDS, MAY_BE_ZERO

GB = 1e9
_DTYPE_PATTERN = "^(" + "|".join(sorted(set(DTYPE_BYTES) | set(_ALIASES))) + ")$"
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
log = get_logger("labsim_gpus")

CONFIG_SCHEMA: dict = {
    "type": "object",
    "description": "A GPU: a preset, optionally re-calibrated and with datasheet fields overridden.",
    "additionalProperties": False,
    "properties": {
        "device_id": {"type": "string", "minLength": 1},
        "device_type": {"type": "string"},
        "preset": {"type": "string", "description": "Start from this registered GPU preset."},
        "profile": {"type": "string",
                    "description": "A calibration profile (JSON from `labsim calibrate`)."},
        "name": {"type": "string", "minLength": 1, "description": "Name shown in results."},
        "arch": {"type": "string", "description": "Architecture generation (ampere, hopper ...): a "
                 "calibration profile fitted on another generation is adjusted to it "
                 "(labsim_gpus.params.ARCH_ADJUST)."},
        "peak_tflops": {
            "type": "object", "description": "Dense TFLOP/s (TOP/s for int8) per precision.",
            "propertyNames": {"pattern": _DTYPE_PATTERN},
            "additionalProperties": _POSITIVE,
        },
        "memory_capacity_bytes": {**_POSITIVE, "description": "Device memory in bytes."},
        "memory_gbps": {**_POSITIVE, "description": "Memory bandwidth in GB/s."},
        "processing_units": {"type": "integer", "minimum": 1, "description": "SM count."},
        "nvlink_gbps": {"type": "number", "minimum": 0,
                        "description": "NVLink GB/s per direction (0: none)."},
        "host_link_gbps": {**_POSITIVE, "description": "Host link (PCIe) GB/s per direction: prices "
                           "host-device copies (`labsim predict` memcpy h2d/d2h rows); the serving "
                           "engines copy nothing to the host, so their results do not use it."},
        "tdp_w": {**_POSITIVE, "description": "Board power in W, shown with the device; labsim prices "
                  "time and GPU-hours, not energy, so no result uses it."},
        "price_per_hour": {"type": "number", "minimum": 0, "description": "USD per GPU-hour."},
        "cost_params": {
            "type": "object", "description": "Override fitted cost-model parameters.",
            "propertyNames": {"enum": list(FIELDS)},
            # a cost that defaults to none (0) may be set to none
            "properties": {name: {"type": "number", "minimum": 0} for name in MAY_BE_ZERO},
            "additionalProperties": _POSITIVE,
        },
    },
}


def _number(spec: dict, key: str, minimum: float = 0.0, strict: bool = True) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            value <= minimum if strict else value < minimum):
        relation = ">" if strict else "≥"
        raise UsageError(f"{key} must be a number {relation} {minimum:g}, got {value!r}")
    return float(value)


def _matched(generic, spec: dict):
    """The catalog GPU whose datasheet *spec* restates, marked as matched; else *generic*
    marked as described by its datasheet."""
    from labsim_gpus.match import NEAR, TOLERANCE, matching_preset, near_preset
    from labsim_gpus.plugin import preset

    entry = matching_preset(spec)
    if entry is None:
        near = near_preset(spec)
        if near is not None:
            log.warning("device_close_to_catalog", catalog=near["name"],
                        note=f"figures within {NEAR:.0%} of {near['name']}'s datasheet but not "
                             f"within {TOLERANCE:.0%}: priced from its own datasheet; if it is "
                             f"that GPU, write `preset: {near['name']}` to use its calibration")
        else:
            log.info("device_datasheet_only", profile=generic.profile_info.get("name"),
                     hint="name a catalog GPU with `preset:` (labsim list devices) to use its "
                          "calibration")
        return generic.copy(profile_info={**generic.profile_info, "source": "datasheet-only"})
    found = preset(entry["name"])
    log.info("device_matched_catalog", catalog=found.name, profile=found.profile_info.get("name"))
    return found.copy(profile_info={**found.profile_info, "source": "matched",
                                    "matched": found.name})


def datasheet_profile(arch: str | None) -> dict:
    """The shipped profile that prices a datasheet-only GPU of *arch* (None: not given): the
    one a catalog preset of that generation takes (:func:`labsim_gpus.plugin.profile_for`)."""
    from labsim_gpus.plugin import profile_for
    from labsim_gpus.profiles import shipped_profile

    return shipped_profile(profile_for({"arch": str(arch or "").lower()}))


def customize(device, spec: dict):
    """*device* (or ``spec['preset']``) with *spec*'s profile and field overrides applied."""
    if not isinstance(spec, dict):
        raise UsageError(f"a device block must be a mapping, got {type(spec).__name__}")
    allowed = set(CONFIG_SCHEMA["properties"])
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise UsageError(f"unknown device field(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed - {'device_id', 'device_type'}))}")
    out = device
    datasheet_only = False
    if "preset" in spec:
        from labsim_gpus.plugin import preset

        out = preset(spec["preset"])
    elif device.name == "GPU" and "profile" not in spec:
        out = _matched(device, spec)
        if out.profile_info.get("matched"):   # the figures are the catalog GPU's own
            from labsim_gpus.match import MATCHED_KEYS

            spec = {k: v for k, v in spec.items() if k not in MATCHED_KEYS}
        else:
            datasheet_only = True
    if "arch" in spec:   # before the profile: a profile of another generation is adjusted to it
        out = out.copy(arch=str(spec["arch"]).lower())
    if "profile" in spec:
        out = out.with_profile(spec["profile"])
    changes: dict = {}
    if "name" in spec:
        changes["name"] = str(spec["name"])
    if "arch" in spec:
        changes["arch"] = str(spec["arch"]).lower()
    if "peak_tflops" in spec:
        peaks = spec["peak_tflops"]
        if not isinstance(peaks, dict) or not peaks:
            raise UsageError("peak_tflops must be a mapping of precision to dense TFLOP/s, "
                             "e.g. {fp16: 312, int8: 624}")
        merged = dict(out.peak_flops)
        for key, value in peaks.items():
            dtype = canonical(key, "peak_tflops key")
            merged[dtype] = _number({f"peak_tflops.{key}": value}, f"peak_tflops.{key}") * 1e12
            if dtype in ("bf16", "fp16") and not {"bf16", "fp16"} <= {canonical(k) for k in peaks}:
                merged["bf16" if dtype == "fp16" else "fp16"] = merged[dtype]  # same tensor rate
        changes["peak_flops"] = merged
    if "memory_capacity_bytes" in spec:
        changes["memory_bytes"] = int(_number(spec, "memory_capacity_bytes"))
    if "memory_gbps" in spec:
        changes["mem_bw"] = _number(spec, "memory_gbps") * GB
    if "processing_units" in spec:
        value = spec["processing_units"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"processing_units must be a whole number ≥ 1, got {value!r}")
        changes["sm_count"] = value
    if "nvlink_gbps" in spec:
        changes["nvlink_bw"] = _number(spec, "nvlink_gbps", strict=False) * GB
    if "host_link_gbps" in spec:
        changes["host_link_bw"] = _number(spec, "host_link_gbps") * GB
    if "tdp_w" in spec:
        changes["tdp_w"] = _number(spec, "tdp_w")
    if "price_per_hour" in spec:
        changes["price_per_hour"] = _number(spec, "price_per_hour", strict=False)
    if changes:
        out = out.copy(**changes)
    if datasheet_only:   # priced after its figures are set: the profile reads them
        from labsim_gpus.profiles import apply_profile

        out = apply_profile(out, datasheet_profile(spec.get("arch")))
        out = out.copy(profile_info={**out.profile_info, "source": "datasheet-only"})
    if "cost_params" in spec:
        if not isinstance(spec["cost_params"], dict):
            raise UsageError("cost_params must be a mapping of parameter name to value")
        out = out.copy(params=out.params.replace(**spec["cost_params"]))
    return out

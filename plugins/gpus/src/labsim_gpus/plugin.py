"""The labsim entry point of labsim-gpus: device presets and the ``calibrate`` command.

Every preset of :mod:`labsim_gpus.catalog` is registered as a :class:`~labsim_gpus.GPU`
priced with a shipped calibration profile (``data/profiles``): the one fitted on the
preset's own architecture generation, used unchanged (Hopper presets: the H100-SXM profile),
or else, for a generation with no measured kernels here (Volta, Ada, Blackwell), the
cross-generation profile of :mod:`labsim_gpus.crossgen` with the preset's own datasheet.
A catalog entry's ``profile`` key names a profile explicitly.
``.datasheet_only()`` gives the uncalibrated model. Profiles listed in
``LABSIM_GPU_PROFILES`` install as extra devices.
"""

from __future__ import annotations

import functools

from labsim import hookimpl
from labsim.log import get_logger
from labsim.errors import LabsimError, UnknownNameError

from labsim_gpus.catalog import GENERIC, MEMORY_GB_BYTES, PRESETS
from labsim_gpus.device import GB, GPU
from labsim_gpus.profiles import (
    CROSS_GENERATION_PROFILE,
    apply_profile,
    device_from_profile,
    installed_profile_paths,
    load_profile,
    shipped_profile,
    shipped_profile_files,
)

log = get_logger("labsim_gpus")

#: the shipped calibration of a preset whose architecture has none of its own: the
#: cross-generation fit (leave-one-GPU-out errors in benchmarks/fidelity_kernels.py)
REFERENCE_PROFILE = CROSS_GENERATION_PROFILE


@functools.cache
def shipped_profiles_by_arch() -> dict[str, str]:
    """The shipped profile file fitted on each architecture generation (its ``arch``)."""
    out: dict[str, str] = {}
    for filename in shipped_profile_files():
        arch = str(shipped_profile(filename).get("arch", "")).lower()
        if not arch:
            continue
        if arch in out:  # a packaging mistake: say which, rather than pick one silently
            raise RuntimeError(f"shipped profiles {out[arch]} and {filename} are both fitted on "
                               f"{arch}; name one per preset with the catalog's 'profile' key")
        out[arch] = filename
    return out


def profile_for(entry: dict) -> str:
    """The shipped profile a catalog entry is priced with (see the module docstring)."""
    return entry.get("profile") or shipped_profiles_by_arch().get(entry["arch"], REFERENCE_PROFILE)


def pricing_note(name: str, profile: dict) -> str:
    """How the preset *name* is priced by *profile*, with the profile's measured error, for
    ``labsim list devices``."""
    errors = profile.get("errors") or {}
    families = ("gemm", "prefill", "decode")
    if profile.get("device") == name:
        figures = ", ".join(f"{f} {errors[f]['median_ape']:.0f} %" for f in families if f in errors)
        return f"calibrated on measured kernels (fit median error {figures})"
    if profile.get("arch"):
        return f"priced by the {profile['device']} calibration (same generation)"
    loo = errors.get("leave_one_gpu_out", {})
    figures = ", ".join(f"{f} {loo[f]['median_ape_median_gpu']:.0f} %" for f in families if f in loo)
    return (f"datasheet-only: cross-generation profile (median error on a GPU left out of its "
            f"fit: {figures})")


def _build(entry: dict) -> GPU:
    device = GPU(
        entry["name"], aliases=tuple(entry["aliases"]), description=entry["description"],
        arch=entry["arch"],
        peak_flops={k: v * 1e12 for k, v in entry["peak_tflops"].items()},
        memory_bytes=int(entry["memory_gb"] * MEMORY_GB_BYTES), mem_bw=entry["mem_bw_gbps"] * GB,
        sm_count=entry["sm_count"], nvlink_bw=entry["nvlink_gbps"] * GB,
        host_link_bw=entry["host_link_gbps"] * GB,
        sm_dram_bw=entry["sm_dram_gbps"] * GB if "sm_dram_gbps" in entry else None,
        tdp_w=entry["tdp_w"],
        price_per_hour=entry["price_per_hour"],
    )
    profile = shipped_profile(profile_for(entry))
    device = apply_profile(device, profile)
    if entry is GENERIC:
        device.is_default = True  # a compute_devices entry without device_type starts from it
    else:
        device = device.copy(description=f"{entry['description']}; {pricing_note(entry['name'], profile)}")
    return device


@functools.cache
def presets() -> dict[str, GPU]:
    """Every preset (and the generic ``GPU`` template) by canonical name."""
    return {e["name"]: _build(e) for e in [*PRESETS, GENERIC]}


def preset(name: str) -> GPU:
    """The preset called *name* (case-insensitive, aliases accepted)."""
    key = str(name).casefold()
    for device in presets().values():
        if key in {device.name.casefold(), *(a.casefold() for a in device.aliases)}:
            return device
    raise UnknownNameError("devices", str(name), presets())


@hookimpl
def register_devices(register):
    for device in presets().values():
        register(device)
    for path in installed_profile_paths():
        try:
            data = load_profile(path)
            register(device_from_profile(data, preset(data.get("device") or "GPU")))
        except LabsimError as ex:
            log.warning("gpu_profile_skipped", path=str(path), error=str(ex))


@hookimpl
def register_commands(cli):
    from labsim_gpus.cli import calibrate_command, measure_command

    cli.add_command(calibrate_command)
    cli.add_command(measure_command)

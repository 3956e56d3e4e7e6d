"""Calibration profiles: the JSON files ``labsim calibrate`` writes and devices load.

A profile records which device it was fitted for, the datasheet numbers the
fit assumed, the fitted :class:`~labsim_gpus.params.CostParams`, the data it
was fitted on (with its attribution) and the fit's errors::

    {"format": "labsim-gpu-profile/1", "name": "a100_sxm4_80gb", "device": "A100-SXM4-80GB",
     "arch": "ampere", "hardware": {...}, "params": {...}, "fitted": [...],
     "data": {...}, "errors": {...}, "attribution": "..."}

Applying a profile to a device of the architecture generation it was fitted on
(its ``arch``) uses its parameters unchanged; a device of another generation gets
them adjusted by :func:`labsim_gpus.params.transfer`. Either way ``sm_bw_share`` is
capped at the device's own bound (``GPU.sm_bw_share_max``, from the DRAM bandwidth one of its
SMs can draw): the H100-SXM profile's share prices an H200 with its 4.8 TB/s at most 3.4. A profile fitted on several
generations at once (``arch`` empty, e.g. the shipped ``cross_generation.json`` of
:mod:`labsim_gpus.crossgen`) applies to any device without factors, and its ``carried``
figures (``onchip_bytes_per_flop``) become parameters through the device's own datasheet. A profile can also *install* as a
device of its own: every profile listed in ``LABSIM_GPU_PROFILES`` (files or
folders, separated by ``os.pathsep``) is registered under its ``install_as``
name (default: its ``name``), built from its ``device`` preset and its
``hardware`` figures.
"""

from __future__ import annotations

import functools
import json
import math
import os
from importlib import resources
from pathlib import Path

from labsim.errors import UsageError

from labsim_gpus.params import DATASHEET_DEFAULTS, FIELDS, transfer

FORMAT = "labsim-gpu-profile/1"
#: the shipped profile fitted on every measured GPU at once (:mod:`labsim_gpus.crossgen`): it
#: prices GPUs of a generation that has no calibration of its own
CROSS_GENERATION_PROFILE = "cross_generation.json"
ENV_VAR = "LABSIM_GPU_PROFILES"


def shipped_profile(filename: str) -> dict:
    """A profile shipped in this package's ``data/profiles`` folder (a fresh dict each call)."""
    return json.loads(_shipped_text(filename))


@functools.cache
def _shipped_text(filename: str) -> str:
    """The text of a shipped profile, read once a process (the presets read three files
    fourteen times at every start-up)."""
    return resources.files("labsim_gpus").joinpath("data", "profiles", filename).read_text("utf-8")


def shipped_profile_files() -> list[str]:
    """File names of the profiles shipped in ``data/profiles``, sorted."""
    folder = resources.files("labsim_gpus").joinpath("data", "profiles")
    return sorted(item.name for item in folder.iterdir() if item.name.endswith(".json"))


def load_profile(path: str | Path) -> dict:
    """Read and check the profile at *path*."""
    from labsim.config import read_text_file

    path = Path(path)
    text = read_text_file(path, "calibration profile", limit=64 << 20)

    def refuse(constant):
        raise ValueError(f"{constant} is not a number a profile may hold")

    try:
        data = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as ex:
        raise UsageError(f"calibration profile {path} is not valid JSON: {ex}") from None
    return check_profile(data, str(path))


def check_profile(data, where: str = "profile") -> dict:
    """*data* if it is a well-formed profile; a :class:`UsageError` naming the problem otherwise."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: a calibration profile must be a JSON object")
    if data.get("format") != FORMAT:
        raise UsageError(f"{where}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    params = data.get("params")
    if not isinstance(params, dict):
        raise UsageError(f"{where}: 'params' must be an object of cost parameters")
    unknown = sorted(set(params) - set(FIELDS))
    if unknown:
        raise UsageError(f"{where}: unknown parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(FIELDS)}")
    carried = data.get("carried", {})
    if not isinstance(carried, dict) or set(carried) - {"onchip_bytes_per_flop"} or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for v in carried.values()):
        raise UsageError(f"{where}: 'carried' may hold only onchip_bytes_per_flop, a number > 0")
    DATASHEET_DEFAULTS.replace(**params)  # validates values
    return data


def apply_profile(device, profile: str | Path | dict):
    """*device* priced with *profile*'s parameters, transferred to its architecture."""
    data = check_profile(profile) if isinstance(profile, dict) else load_profile(profile)
    params = DATASHEET_DEFAULTS.replace(**data["params"])
    params = transfer(params, str(data.get("arch", "")), device.arch)
    bound = getattr(device, "sm_bw_share_max", math.inf)
    if params.sm_bw_share > bound:  # a share fitted on another device: no SM draws beyond its own
        params = params.replace(sm_bw_share=bound)
    carried = data.get("carried") or {}
    if "onchip_bytes_per_flop" in carried:
        from labsim_gpus.crossgen import onchip_ratio, tensor_peak

        params = params.replace(onchip_bw_ratio=onchip_ratio(
            float(carried["onchip_bytes_per_flop"]), tensor_peak(device), device.mem_bw))
    info = {"name": data.get("name", ""), "fitted_on": data.get("device", ""),
            "arch": data.get("arch", ""), "attribution": data.get("attribution", "")}
    if data.get("arch") and data.get("arch") != device.arch:
        info["transferred_to"] = device.arch
    if carried:
        info["carried"] = dict(carried)
    return device.copy(params=params, profile_info=info)


def installed_profile_paths() -> list[Path]:
    """Profile files named by ``LABSIM_GPU_PROFILES`` (folders contribute their ``*.json``)."""
    out: list[Path] = []
    for item in filter(None, os.environ.get(ENV_VAR, "").split(os.pathsep)):
        path = Path(item)
        out.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return out


def device_from_profile(data: dict, base):
    """A new device named by the profile, starting from *base* (its ``device`` preset)."""
    from labsim_gpus.spec import customize

    hw = dict(data.get("hardware") or {})
    name = data.get("install_as") or data.get("name")
    if not name:
        raise UsageError("a profile installed as a device needs 'install_as' or 'name'")
    spec = {k: v for k, v in hw.items() if k in ("peak_tflops", "memory_capacity_bytes",
                                                   "memory_gbps", "processing_units",
                                                   "nvlink_gbps", "host_link_gbps", "tdp_w",
                                                   "price_per_hour", "arch")}
    device = customize(base, spec).copy(name=name, aliases=(),
                                        description=f"{base.name} calibrated by profile {name}")
    return apply_profile(device, data)


def write_profile(path: str | Path, data: dict) -> None:
    """Write *data* as a profile file (pretty JSON)."""
    check_profile(data, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

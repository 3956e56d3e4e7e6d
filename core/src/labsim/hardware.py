"""Assembling the experiment's hardware from registered devices and topologies.

``hardware_profile`` may name one device preset (``device: H100-SXM``), a
topology preset (``topology: dgx-h100``) or write devices out
(``compute_devices``), each starting from a registered device and overriding
its fields. Frameworks then ask :meth:`Hardware.device` for the GPU they run on.
"""

from __future__ import annotations

from typing import Any

from labsim.config import Experiment
from labsim.errors import ConfigError, LabsimError, UsageError
from labsim.registry import Registry


class Hardware:
    """The devices, topology and network links of one experiment."""

    def __init__(self, devices: dict[str, Any], default=None, topology=None, links=None):
        self.devices = devices
        self.default = default
        self.topology = topology
        self.links = {link["link_id"]: link for link in links or []}

    def device(self, device_id: str | None = None):
        """The device called *device_id*, or the experiment's device when none is named."""
        if device_id is not None and device_id in self.devices:
            return self.devices[device_id]
        if device_id is not None and self.devices:
            raise UsageError(
                f"no device {device_id!r} in hardware_profile.compute_devices; "
                f"defined: {', '.join(sorted(self.devices))}"
            )
        if self.default is not None:
            return self.default
        if self.devices:
            return next(iter(self.devices.values()))
        topo_device = getattr(self.topology, "device", None)
        if topo_device is not None:
            return topo_device
        raise UsageError(
            "hardware_profile names no device: add `device: H100-SXM` (see "
            "`labsim list devices`), a `topology`, or `compute_devices`"
        )

    def summary(self) -> dict:
        out = {}
        if self.default is not None:
            out["device"] = self.default.name
        if self.devices:
            out["compute_devices"] = {k: v.name for k, v in sorted(self.devices.items())}
        if self.topology is not None:
            out["topology"] = getattr(self.topology, "name", str(self.topology))
        pricing = {}
        for label, dev in [("device", self.default), *sorted(self.devices.items()),
                           ("topology", getattr(self.topology, "device", None))]:
            if dev is not None and callable(getattr(dev, "pricing", None)):
                pricing.setdefault(label, dev.pricing())
        if pricing:
            out["pricing"] = pricing     # which calibration priced each device, and why
        return out


def _customized(component, spec: dict, exp: Experiment, path: tuple):
    try:
        return component.customize(spec) if spec else component
    except ConfigError:
        raise
    except LabsimError as ex:
        raise ConfigError([exp.problem(path, str(ex))]) from None


#: keys of device and topology blocks that name a file, read from the experiment's folder
FILE_KEYS = ("profile",)


def _with_paths(spec: dict, exp: Experiment) -> dict:
    return {k: (str(exp.resolve_path(v)) if k in FILE_KEYS and isinstance(v, str) else v) for k, v in spec.items()}


def resolve_topology(registry: Registry, topology, nodes: int | None = None, device=None):
    """A topology from its name, a ``{type: NAME, nodes: 2, ...}`` block (as in experiment
    files) or an object, with *nodes* servers when given and populated with *device*."""
    if isinstance(topology, str):
        topo = registry.get("topologies", topology)
    elif isinstance(topology, dict):
        if "type" not in topology:
            raise UsageError("a topology block needs `type` (e.g. {type: dgx-h100, nodes: 2})")
        topo = registry.get("topologies", topology["type"])
        spec = {k: v for k, v in topology.items() if k != "type"}
        topo = topo.customize(spec) if spec else topo
    else:
        topo = topology
    if nodes is not None:
        if topo is None:
            raise UsageError("nodes needs a topology (e.g. topology dgx-h100 with nodes 2)")
        topo = topo.customize({"nodes": nodes})
    if topo is not None and device is not None and hasattr(topo, "with_device"):
        topo = topo.with_device(device)
    return topo


def build_hardware(profile: dict, registry: Registry, exp: Experiment) -> Hardware:
    """Build the :class:`Hardware` described by a validated ``hardware_profile``.

    File references in a device or topology block (``profile: my_gpu.json``) are
    read relative to the experiment file's folder.
    """
    default = None
    if "device" in profile:
        default = registry.get("devices", profile["device"])
    devices = {}
    for i, entry in enumerate(profile.get("compute_devices") or []):
        base = registry.get("devices", entry.get("device_type", "GPU"))
        spec = _with_paths({k: v for k, v in entry.items() if k not in ("device_id", "device_type")}, exp)
        device = _customized(base, spec, exp, ("hardware_profile", "compute_devices", i))
        devices[entry["device_id"]] = device
    topology = None
    topo = profile.get("topology")
    if isinstance(topo, str):
        topology = registry.get("topologies", topo)
    elif isinstance(topo, dict):
        base = registry.get("topologies", topo["type"])
        spec = _with_paths({k: v for k, v in topo.items() if k != "type"}, exp)
        topology = _customized(base, spec, exp, ("hardware_profile", "topology"))
    if topology is not None and default is not None and hasattr(topology, "with_device"):
        topology = topology.with_device(default)
    return Hardware(devices, default, topology, profile.get("network_links"))

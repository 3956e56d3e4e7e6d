"""Assembling the experiment's hardware from registered devices and topologies.

``hardware_profile`` may name one device preset (``device: H100-SXM``), a
topology preset (``topology: dgx-h100``) or write devices out
(``compute_devices``), each starting from a registered device and overriding
its fields. Frameworks ask :meth:`Hardware.device` for the GPU model they run
on and take GPUs with :meth:`Hardware.allocate`.

GPUs are a resource. Frameworks side by side are alternatives, each on its own
copy of the hardware; a framework asking for more GPUs than the hardware has
is refused, naming the counts. A topology bounds the count (its
``world_size``); a bare ``device:`` is a GPU model with as many GPUs as asked.
Frameworks given a ``placement: {gpus: [...]}`` share the named GPUs instead,
as tenants, and the GPU's sharing mode (``hardware_profile.sharing``, exclusive
by default) admits them and arbitrates their work: every piece of GPU work
passes :meth:`Gpu.execute`, the per-GPU execution point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labsim.config import Experiment
from labsim.errors import ConfigError, LabsimError, UsageError
from labsim.registry import Registry


@dataclass(frozen=True)
class NetworkLink:
    """A point-to-point link outside the GPU topology (``hardware_profile.network_links``),
    e.g. from the clients to a serving framework's API server.

    A transfer takes ``latency_s + bytes × 8 / bandwidth_bps``; transfers do not queue
    behind each other (each gets the whole bandwidth), which holds while the link is far
    from full, as a client link carrying prompts and streamed tokens is.
    """

    link_id: str
    bandwidth_bps: float
    latency_s: float = 0.0
    source_id: str = ""
    dest_id: str = ""

    def transfer_s(self, nbytes: float) -> float:
        """Seconds for *nbytes* to cross the link."""
        return self.latency_s + float(nbytes) * 8.0 / self.bandwidth_bps


class Gpu:
    """One GPU: its id, its device (the cost model) and its execution point.

    :param mode: the GPU's :class:`labsim.SharingMode` instance (None: exclusive use by
        one framework, which runs its work as it comes).
    """

    __slots__ = ("gpu_id", "device", "env", "mode", "_takes_membound")

    def __init__(self, gpu_id: str, device, env, mode=None):
        self.gpu_id = gpu_id
        self.device = device
        self.env = env
        self.mode = mode
        self._takes_membound = None

    def execute(self, tenant: str, seconds: float, membound: float | None = None):
        """A SimPy event that fires when *tenant*'s work of *seconds* (alone) is done here
        (*membound*: the share of it bound by memory bandwidth, when known)."""
        if self.mode is None:
            return self.env.timeout(seconds)
        if self._takes_membound is None:  # modes written before membound existed take two arguments
            import inspect

            params = inspect.signature(self.mode.execute).parameters
            self._takes_membound = "membound" in params or any(
                p.kind is p.VAR_KEYWORD for p in params.values())
        if self._takes_membound:
            return self.mode.execute(tenant, seconds, membound=membound)
        return self.mode.execute(tenant, seconds)

    def is_alone(self, tenant: str) -> bool:
        """True when no other tenant's work can slow *tenant*'s on this GPU now."""
        return self.mode is None or self.mode.is_alone(tenant)

    def __repr__(self) -> str:
        return f"<Gpu {self.gpu_id} {getattr(self.device, 'name', '')}>"


class GpuSet:
    """The GPUs one framework holds: run a piece of work on all of them at once.

    >>> gpus = context.hardware.allocate("vllm", 2)                 # doctest: +SKIP
    >>> yield gpus.execute(step_seconds)                             # doctest: +SKIP
    """

    __slots__ = ("owner", "gpus", "env", "exclusive")

    def __init__(self, owner: str, gpus: list[Gpu], env):
        self.owner = owner
        self.gpus = gpus
        self.env = env
        self.exclusive = all(g.mode is None for g in gpus)

    def __len__(self) -> int:
        return len(self.gpus)

    def __iter__(self):
        return iter(self.gpus)

    def execute(self, seconds: float, membound: float | None = None):
        """An event that fires when work of *seconds* (alone) is done on every GPU of the set.

        Under exclusive use it is a plain timeout (value None: the work ended *seconds* from
        now); on shared GPUs its value is the simulated time the last GPU finished.
        *membound*: the share of the work bound by memory bandwidth (0…1), when known.
        """
        if self.exclusive:
            return self.env.timeout(seconds)
        return self.env.process(self._shared(seconds, membound))

    def _shared(self, seconds: float, membound: float | None = None):
        events = [g.execute(self.owner, seconds, membound) for g in self.gpus]
        yield events[0] if len(events) == 1 else self.env.all_of(events)
        return self.env.now

    def subset(self, start: int, stop: int) -> GpuSet:
        """GPUs *start*…*stop*−1 of this set (one replica's, one pipeline stage's)."""
        return GpuSet(self.owner, self.gpus[start:stop], self.env)

    def is_alone(self) -> bool:
        """True when nothing else can slow this set's work (fast-forward asks before skipping
        steps)."""
        return self.exclusive or all(g.is_alone(self.owner) for g in self.gpus)

    def span(self, membound_of, steps: int):
        """On one shared GPU, its sharing mode's lease on a run of this set's pieces of work
        (:meth:`labsim.SharingMode.span`), else None."""
        if self.exclusive or len(self.gpus) != 1:
            return None
        gpu = self.gpus[0]
        return None if gpu.mode is None else gpu.mode.span(self.owner, membound_of, steps)


class Hardware:
    """The devices, topology, GPUs and network links of one experiment."""

    def __init__(self, devices: dict[str, Any], default=None, topology=None, links=None, sharing=None):
        self.devices = devices
        self.default = default
        self.topology = topology
        self.links = {
            link["link_id"]: NetworkLink(**{k: link[k] for k in NetworkLink.__dataclass_fields__ if k in link})
            for link in links or []
        }
        self.sharing = sharing or {}
        #: the experiment's framework instance names (set by the orchestrator)
        self.framework_names: set[str] = set()
        #: each framework instance's ``placement`` (set by the orchestrator)
        self.placements: dict[str, dict] = {}
        self.accounting = None
        self.context = None
        self._shared: dict[str, Gpu] = {}
        self.allocations: dict[str, GpuSet] = {}

    def bind(self, context) -> None:
        """Attach the run (its SimPy environment, registry and accounting)."""
        self.context = context
        self.accounting = context.accounting

    def link_to(self, owner: str) -> NetworkLink | None:
        """The network link clients reach framework *owner* through: the link whose
        ``dest_id`` is *owner*, else the one link whose ``dest_id`` names no framework (an
        entry point every framework sits behind, as seed 001 writes it), else None."""
        for link in self.links.values():
            if link.dest_id == owner:
                return link
        shared = [link for link in self.links.values() if link.dest_id not in self.framework_names]
        return shared[0] if len(shared) == 1 else None

    @property
    def capacity(self) -> int | None:
        """How many GPUs the hardware has (None: a device model with as many as asked)."""
        world = getattr(self.topology, "world_size", None)
        return int(world) if world else None

    def _describe_capacity(self) -> str:
        topo = self.topology
        return (f"topology {topo.name!r} has {topo.world_size} ({topo.nodes} node(s) × "
                f"{topo.gpus_per_node})")

    def allocate(self, owner: str, count: int, device=None, why: str = "") -> GpuSet:
        """Hand *count* GPUs of *device* (default: the experiment's) to framework *owner*.

        Without a placement the owner gets GPUs 0…count−1 of its own copy of the
        hardware; with ``placement: {gpus: [ids]}`` it becomes a tenant of those
        shared GPUs, admitted by their sharing mode.

        :param why: how the framework arrived at *count* (``"2 replicas × TP 4"``), for errors.
        :raises UsageError: more GPUs than the hardware has, or a placement the sharing mode
            refuses.
        """
        from labsim.errors import UsageError

        env = self.context.env
        device = device if device is not None else self.device()
        count = int(count)
        capacity = self.capacity
        placement = self.placements.get(owner) or {}
        ids = _placed_gpus(placement)
        if ids:
            if len(ids) != count:
                raise UsageError(f"frameworks_to_test {owner!r}: placement.gpus names {len(ids)} GPU(s) "
                                 f"but the framework needs {count}{f' ({why})' if why else ''}")
            gpus = [self._shared_gpu(gpu_id, device, env) for gpu_id in ids]
            for gpu in gpus:
                gpu.mode.admit(owner, placement)
        else:
            if capacity is not None and count > capacity:
                raise UsageError(
                    f"frameworks_to_test {owner!r} needs {count} GPUs{f' ({why})' if why else ''}, but "
                    f"{self._describe_capacity()}; use fewer, or a larger topology "
                    f"(hardware_profile.topology: {{type: {self.topology.name}, nodes: "
                    f"{-(-count // self.topology.gpus_per_node)}}})")
            gpus = [Gpu(f"gpu{i}", device, env) for i in range(count)]
        allocation = GpuSet(owner, gpus, env)
        self.allocations[owner] = allocation
        if self.accounting is not None:
            self.accounting.hold(owner, gpus)
        return allocation

    def claim_memory(self, owner: str, nbytes: float) -> None:
        """Framework *owner* holds *nbytes* on each of its GPUs; on shared GPUs the sharing
        mode checks it against what the other tenants hold (exclusive GPUs: nothing to do)."""
        allocation = self.allocations.get(owner)
        if allocation is None or allocation.exclusive:
            return
        for gpu in allocation.gpus:
            if gpu.mode is not None:
                gpu.mode.claim_memory(owner, nbytes)

    def _shared_gpu(self, gpu_id: str, device, env) -> Gpu:
        """The shared GPU *gpu_id*, made (with its sharing mode) on first use."""
        from labsim.errors import UsageError

        gpu = self._shared.get(gpu_id)
        if gpu is not None:
            return gpu
        index = _gpu_index(gpu_id)
        capacity = self.capacity
        if index is None or (capacity is not None and index >= capacity):
            allowed = f"gpu0 … gpu{capacity - 1}" if capacity else "gpu0, gpu1, …"
            raise UsageError(f"placement names GPU {gpu_id!r}; this hardware has {allowed}")
        registry = self.context.registry
        config = dict(self.sharing)
        mode_name = config.get("type") or registry.default("sharing_modes")
        if not mode_name:
            raise UsageError("no sharing mode is installed to place frameworks on shared GPUs")
        gpu = Gpu(gpu_id, device, env)
        gpu.mode = registry.get("sharing_modes", mode_name)(config, gpu, self.context)
        self._shared[gpu_id] = gpu
        return gpu

    def device(self, device_id: str | None = None, owner: str | None = None):
        """The device called *device_id*, or the experiment's device when none is named; for a
        framework *owner* placed on shared GPUs, the device its sharing mode gives it (a MIG
        slice is a smaller device)."""
        if owner is not None and _placed_gpus(self.placements.get(owner) or {}):
            placement = self.placements[owner]
            base = self.device(device_id)
            gpu = self._shared_gpu(_placed_gpus(placement)[0], base, self.context.env)
            return gpu.mode.tenant_device(owner, placement, base)
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
        shared = {gpu_id: gpu.mode.summary() for gpu_id, gpu in sorted(self._shared.items())}
        shared = {k: v for k, v in shared.items() if v}
        if shared:
            out["sharing"] = shared      # what each shared GPU's mode saw
        return out


def _placed_gpus(placement: dict) -> list[str]:
    """The GPU ids a ``placement`` names: ``gpus: [gpu0, gpu1]`` or ``gpu: gpu0``."""
    if placement.get("gpus"):
        return [str(g) for g in placement["gpus"]]
    if placement.get("gpu"):
        return [str(placement["gpu"])]
    return []


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
    if isinstance(topo, dict) and topo.get("device") and default is not None:
        named = registry.get("devices", topo["device"])
        if getattr(named, "name", named) != getattr(default, "name", default):
            raise ConfigError([exp.problem(("hardware_profile", "topology", "device"), (
                f"the topology's device {topo['device']!r} is not hardware_profile.device "
                f"{profile['device']!r}, which every GPU of the topology would be; keep one of them"))])
    if topology is not None and default is not None and hasattr(topology, "with_device"):
        topology = topology.with_device(default)
    _check_links(profile.get("network_links") or [], exp)
    return Hardware(devices, default, topology, profile.get("network_links"), profile.get("sharing"))


def _check_links(links: list, exp: Experiment) -> None:
    """Refuse network links that would be silently unused: two with one ``link_id`` (the
    first would be dropped), several entry points (``dest_id`` naming no framework) in front
    of a framework without its own link (which one would it use?), or an entry point when
    every framework has its own link (it would carry nothing)."""
    where = ("hardware_profile", "network_links")
    seen: dict[str, int] = {}
    for i, link in enumerate(links):
        if link["link_id"] in seen:
            raise ConfigError([exp.problem((*where, i, "link_id"), (
                f"link_id {link['link_id']!r} is also link {seen[link['link_id']]}'s; give each link "
                "its own id"))])
        seen[link["link_id"]] = i
    names = {str(entry.get("name")) for entry in exp.data.get("frameworks_to_test") or []}
    entries = [link["link_id"] for link in links if link.get("dest_id", "") not in names]
    alone = sorted(names - {link.get("dest_id", "") for link in links})
    if len(entries) > 1 and alone:
        raise ConfigError([exp.problem(where, (
            f"links {', '.join(map(repr, entries))} all lead to no framework (their dest_id names none "
            f"of {', '.join(sorted(names))}), so {', '.join(map(repr, alone))} would have no single "
            "link to use; set each link's dest_id to the framework it serves, or keep one entry "
            "point"))])
    if entries and not alone:
        raise ConfigError([exp.problem(where, (
            f"link {entries[0]!r} leads to no framework (its dest_id names none of "
            f"{', '.join(sorted(names))}) and every framework has a link of its own, so it would "
            "carry nothing; remove it or set its dest_id to a framework's name"))])


def _gpu_index(gpu_id: str) -> int | None:
    """``"gpu3"`` → 3; None for another spelling."""
    text = str(gpu_id)
    return int(text[3:]) if text.startswith("gpu") and text[3:].isdigit() else None

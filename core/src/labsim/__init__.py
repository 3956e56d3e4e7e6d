"""labsim: a plugin-based discrete-event simulator of AI workloads on virtual hardware.

The public Python API::

    import labsim

    result = labsim.run("experiment.yaml", seed=1)          # a Result
    result.summary["frameworks"]

    h100 = labsim.device("H100-SXM")
    h100.gemm_time(4096, 4096, 4096, dtype="bf16")          # seconds
    labsim.collective_time("all_reduce", 64 << 20, ranks=8, device="H100-SXM")

Plugins implement the hooks of :mod:`labsim.hookspecs` with ``@labsim.hookimpl``
and register subclasses of the bases exported here.
"""

import importlib
import importlib.util

from labsim import log as _log
from labsim.components import (
    Collective,
    Component,
    Device,
    Distribution,
    Framework,
    MetricSink,
    Scheduler,
    SharingMode,
    Topology,
    Workload,
)
from labsim.errors import ConfigError, LabsimError, PluginError, UnknownNameError, UsageError
from labsim.hookspecs import hookimpl
from labsim.registry import get_registry

__version__ = "0.1.0"

_log.configure_default()


def __getattr__(name: str):
    """``run`` and ``Result``, from :mod:`labsim.orchestrator` when first asked for, and any
    submodule as an attribute (``labsim.orchestrator.load_experiment`` after ``import
    labsim``): importing ``labsim`` does not import numpy, so the command line can set numpy's
    BLAS threads first (:mod:`labsim.numeric_threads`)."""
    if name in ("run", "Result"):
        from labsim import orchestrator

        return getattr(orchestrator, name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def device(name: str) -> Device:
    """The registered device *name* (case-insensitive; aliases such as ``h100`` work)."""
    return get_registry().get("devices", name)


def topology(name: str) -> Topology:
    """The registered topology *name* (``dgx-h100`` ...)."""
    return get_registry().get("topologies", name)


def collective_time(
    collective: str,
    nbytes: int,
    ranks: int | list[int] = 8,
    device: str | Device | None = None,
    topology: str | dict | Topology | None = None,
    algorithm: str = "auto",
    nodes: int | None = None,
) -> float:
    """Seconds for one collective call of *nbytes* (the nccl-tests "size") over *ranks* GPUs.

    *ranks* is a count (ranks 0…n−1, filling node 0 first) or a list of global
    ranks. Name a *device* (one server of it is assumed), a *topology* (a name, or
    a block as in experiment files), or both (the topology populated with that
    device, as in an experiment file); *nodes* sets the topology's server count.

    >>> labsim.collective_time("all_reduce", 256 << 20, ranks=8, device="A100-SXM4-80GB")  # doctest: +SKIP
    >>> labsim.collective_time("all_reduce", 1 << 30, ranks=16, topology="dgx-h100", nodes=2)  # doctest: +SKIP
    >>> labsim.collective_time("send_recv", 8 << 20, ranks=[0, 8],
    ...                        topology={"type": "dgx-h100", "nodes": 2})                 # doctest: +SKIP
    """
    from labsim.hardware import resolve_topology

    registry = get_registry()
    if device is None and topology is None:
        raise UsageError(
            "collective_time: name a device (e.g. device='H100-SXM') or a topology "
            "(e.g. topology='dgx-h100')"
        )
    dev = registry.get("devices", device) if isinstance(device, str) else device
    topo = resolve_topology(registry, topology, nodes, dev)
    if dev is None:
        dev = topo.device
    op = registry.get("collectives", collective)
    ranks = [int(r) for r in ranks] if isinstance(ranks, list | tuple) else int(ranks)
    return op.time(int(nbytes), ranks=ranks, device=dev, topology=topo, algorithm=algorithm)


__all__ = [
    "Collective",
    "Component",
    "ConfigError",
    "Device",
    "Distribution",
    "Framework",
    "LabsimError",
    "MetricSink",
    "PluginError",
    "Result",
    "Scheduler",
    "SharingMode",
    "Topology",
    "UnknownNameError",
    "UsageError",
    "Workload",
    "collective_time",
    "device",
    "get_registry",
    "hookimpl",
    "run",
    "topology",
]

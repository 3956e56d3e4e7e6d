"""Base classes of the things plugins register.

The kernel knows nothing about H100s or vLLM; it knows these interfaces.
Each extension point is a documented method that raises
``NotImplementedError`` until a plugin overrides it (the SimPy habit).

Every component carries:

``name``
    the key used in experiment files and lookups (case-insensitive);
``aliases``
    other spellings that resolve to it;
``description``
    one line for ``labsim list`` (defaults to the first docstring line);
``config_schema``
    the JSON Schema of its configuration block;
``is_default``
    True for the one component of its kind used when a block names none;
``experiment_fields``
    keys it adds to the kernel's sections of the experiment file (dotted path →
    schema), e.g. ``{"metrics_config.slo": {...}}``; only plugins that own a
    setting declare it, so the kernel's schema knows nothing of LLMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from labsim.context import RunContext

OPEN_OBJECT: dict = {"type": "object"}


def describe(component: Any) -> str:
    """One line that says what *component* is: ``description`` or its docstring's first line."""
    text = getattr(component, "description", "") or ""
    if not text:
        doc = getattr(component, "__doc__", None) or ""
        text = doc.strip().splitlines()[0] if doc.strip() else ""
    return text.strip()


class Component:
    """Common attributes of every registered component."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict] = OPEN_OBJECT
    is_default: ClassVar[bool] = False
    experiment_fields: ClassVar[dict] = {}
    #: keys every block of this kind allows besides the component's own (the selector's
    #: neighbours, handled by the base class)
    block_properties: ClassVar[dict] = {}


# -- hardware ------------------------------------------------------------------------------


class Device(Component):
    """A compute device that prices operations in seconds: the Device protocol.

    A plugin registers instances (presets such as ``H100-SXM``). An experiment
    may adjust a preset with :meth:`customize`. The cost methods are the
    public cost oracle behind ``labsim.device(NAME).gemm_time(...)`` and
    ``labsim predict``; frameworks price every piece of GPU work through them.
    Every method plugins call is declared here: the first four are required,
    the rest have conservative defaults built from the first four so that a
    minimal device still works everywhere (a real cost model overrides them).

    Datasheet attributes (0 when unknown): ``memory_bytes``, ``mem_bw`` (B/s),
    ``peak_flops`` (dtype → FLOP/s), ``nvlink_bw`` and ``host_link_bw`` (B/s per
    direction), ``price_per_hour`` (USD per GPU-hour), ``launch_overhead`` (s).

    >>> labsim.device("H100-SXM").gemm_time(4096, 4096, 4096, dtype="bf16")  # doctest: +SKIP
    0.000158...
    """

    #: every block in ``hardware_profile.compute_devices`` also names itself
    block_properties: ClassVar[dict] = {"device_id": {"type": "string", "minLength": 1}}

    memory_bytes: float = 0.0
    mem_bw: float = 0.0
    peak_flops: dict = {}
    nvlink_bw: float = 0.0
    host_link_bw: float = 0.0
    price_per_hour: float = 0.0
    launch_overhead: float = 0.0

    def customize(self, spec: dict) -> Device:
        """A copy of this device with the fields of *spec* (validated by ``config_schema``)."""
        raise NotImplementedError(self)

    def gemm_time(self, m: int, n: int, k: int, dtype: str = "bf16") -> float:
        """Seconds for ``C[m,n] = A[m,k]·W[n,k]ᵀ`` in *dtype*."""
        raise NotImplementedError(self)

    def attention_time(self, phase: str, **shape: Any) -> float:
        """Seconds for one layer of attention (``phase`` = prefill | decode)."""
        raise NotImplementedError(self)

    def memcpy_time(self, nbytes: int, kind: str = "d2d") -> float:
        """Seconds to copy *nbytes* (``kind`` = d2d | h2d | d2h)."""
        raise NotImplementedError(self)

    def supports(self, dtype: str) -> bool:
        """Whether the device computes in *dtype* (``fp8`` needs Hopper or later)."""
        return dtype in (self.peak_flops or {"bf16": 1, "fp16": 1, "fp32": 1})

    def elementwise_time(self, nbytes: float) -> float:
        """Seconds for an element-wise kernel reading and writing *nbytes* in all."""
        return self.memcpy_time(int(nbytes), "d2d")

    def norm_time(self, nbytes: float) -> float:
        """Seconds for a normalisation (RMSNorm, LayerNorm) over *nbytes* in all."""
        return self.elementwise_time(nbytes)


class Topology(Component):
    """How devices are wired: a box (``dgx-h100``) or a cluster of boxes.

    Attributes frameworks read: ``world_size`` (GPUs in all), ``nodes``,
    ``gpus_per_node`` and ``device`` (the device it is populated with, or None).
    """

    world_size: int = 0
    nodes: int = 1
    gpus_per_node: int = 0
    device: Any = None

    def customize(self, spec: dict) -> Topology:
        """A copy of this topology with the fields of *spec*."""
        raise NotImplementedError(self)

    def with_device(self, device: Device) -> Topology:
        """This topology populated with *device* (each GPU of it)."""
        raise NotImplementedError(self)


class Collective(Component):
    """A collective operation (``all_reduce`` ...) that prices itself on a topology."""

    def time(
        self, nbytes: int, *, ranks: int | list[int], device: Any, topology: Any = None,
        algorithm: str = "auto",
    ) -> float:
        """Seconds for one call moving *nbytes* (the nccl-tests "size") over *ranks*
        (a count, ranks 0…n−1, or a list of global ranks)."""
        raise NotImplementedError(self)


class SharingMode(Component):
    """How one GPU is shared by the frameworks placed on it: its execution point.

    Every piece of GPU work of every framework passes through
    :meth:`labsim.hardware.Gpu.execute`, which asks the GPU's sharing mode.
    The default, ``exclusive``, admits one framework per GPU and runs its work
    as it comes; a plugin mode (time-slicing, MPS, MIG) arbitrates between the
    tenants it admits. Selected by ``hardware_profile.sharing: {type: NAME, ...}``.

    ``tenant`` below is the framework instance's name.
    """

    def __init__(self, config: dict, gpu, context: RunContext):
        self.config = config
        self.gpu = gpu
        self.context = context
        self.tenants: list[str] = []

    def admit(self, tenant: str, placement: dict) -> None:
        """Place *tenant* on this GPU, or raise :class:`labsim.UsageError` saying why not."""
        self.tenants.append(tenant)

    def tenant_device(self, tenant: str, placement: dict, device):
        """The device *tenant* sees and prices its work on (default: the whole GPU's *device*;
        a partitioning mode such as MIG returns its slice: fewer SMs, less memory)."""
        return device

    def execute(self, tenant: str, seconds: float, membound: float | None = None):
        """A SimPy event that fires when *tenant*'s work of *seconds* (alone on the GPU) is done.

        *membound*, when the framework knows it, is the share of those seconds bound by memory
        bandwidth rather than by the SMs (0: all compute, 1: all memory); modes that split the
        GPU between concurrent tenants (MPS) use it, others ignore it.
        """
        raise NotImplementedError(self)

    def claim_memory(self, tenant: str, nbytes: float) -> None:
        """*tenant* holds *nbytes* of this GPU's memory from now on (a mode without memory
        isolation records an out-of-memory failure when the tenants' sum exceeds the GPU)."""

    def summary(self) -> dict:
        """What the mode observed on this GPU (tenants, failures, busy time), for summary.json
        under ``hardware.sharing.<gpu id>``."""
        return {}

    def is_alone(self, tenant: str) -> bool:
        """True when *tenant*'s work cannot be slowed by another tenant now (so it may
        advance many steps at once)."""
        return len(self.tenants) <= 1

    def span(self, tenant: str, membound_of, steps: int):
        """A lease on a run of at most *steps* consecutive pieces of *tenant*'s work that the
        tenant times itself (fast-forward on a shared GPU), or None (the default: the tenant
        submits them one by one through :meth:`execute`).

        ``membound_of(i)`` is piece *i*'s memory-bound share. The lease (see
        ``labsim_sharing.fluid.Lease``) says how many pieces it holds (``steps``), fires
        ``ready`` once the piece's ``rate`` is known, prices each piece with ``end(start,
        seconds)``, waits with ``at(time)``, fires ``cut`` when the rate changes (the tenant then
        hands the piece in progress back with ``resume(index, began)``) and ends with
        ``close(ends)``; the outcome must equal, bit for bit, submitting the pieces one by one.
        """
        return None


# -- simulation components ---------------------------------------------------------------


class Framework(Component):
    """A serving engine, training framework or cluster policy running inside the simulation.

    The orchestrator constructs it with its experiment-file entry, calls
    :meth:`start` once, and feeds it work items through :meth:`submit` (when it
    is a target of the workload). When the run ends it calls :meth:`summary`.

    ``accepts`` names the kinds of work item it takes (``("LLM requests",)``,
    ``("training jobs",)``); a workload whose ``makes`` is not among them is
    refused when the experiment is checked. Empty means "any".

    A framework tells listeners (closed-loop clients, sessions) when an item
    has finished by calling :meth:`notify_finished`. It takes GPUs with
    ``self.context.hardware.allocate(self.instance_name, count)`` and runs every
    piece of GPU work through the returned GPUs' ``execute``, and reports what it
    held and used to ``self.context.accounting``.

    ``summary_schema`` describes its section of summary.json (default: any object);
    ``headline`` lists ``(label, dotted.path)`` rows for the result table (default: none,
    and the table shows the section's top-level numbers).
    """

    accepts: ClassVar[tuple[str, ...]] = ()
    summary_schema: ClassVar[dict] = OPEN_OBJECT
    headline: ClassVar[tuple] = ()

    def __init__(self, instance_name: str, config: dict, context: RunContext):
        self.instance_name = instance_name
        self.config = config
        self.context = context
        self._listeners: list = []

    def start(self) -> None:
        """Start this framework's SimPy processes."""
        raise NotImplementedError(self)

    def submit(self, request: Any) -> None:
        """Accept one request at the current simulated time."""
        raise NotImplementedError(self)

    def summary(self) -> dict:
        """This framework's section of ``summary.json`` (under ``frameworks``)."""
        raise NotImplementedError(self)

    def add_listener(self, callback) -> None:
        """Call ``callback(request)`` whenever a request finishes or is rejected."""
        self._listeners.append(callback)

    def notify_finished(self, request: Any) -> None:
        """Tell every listener that *request* has left this framework."""
        for callback in self._listeners:
            callback(request)


class Workload(Component):
    """Generates work items (LLM requests, a training job, cluster jobs) for one target.

    The orchestrator builds one copy per target, each drawing from identical
    random streams, so every framework sees the identical work. ``makes`` names
    the kind of item it generates (matched against each target's ``accepts``).
    """

    makes: ClassVar[str] = ""

    def __init__(self, config: dict, context: RunContext):
        self.config = config
        self.context = context

    def start(self, target: Framework) -> None:
        """Start the SimPy processes that call ``target.submit(item)``."""
        raise NotImplementedError(self)

    def summary(self) -> dict:
        """Facts about the generated stream for ``summary.json`` (may be empty)."""
        return {}


class Distribution(Component):
    """A random distribution configured by a ``*_dist_config`` block.

    ``is_int: true`` rounds samples to integers; ``min`` and ``max`` clip.
    """

    block_properties: ClassVar[dict] = {
        "is_int": {"type": "boolean", "default": False, "description": "Round samples to integers."},
        "min": {"type": "number", "description": "Clip samples below this."},
        "max": {"type": "number", "description": "Clip samples above this."},
    }

    def __init__(self, config: dict, rng):
        self.config = config
        self.rng = rng
        self.is_int = bool(config.get("is_int", False))
        self.low = config.get("min")
        self.high = config.get("max")

    @classmethod
    def config_problems(cls, config: dict) -> list[str]:
        """What is wrong with *config* beyond its schema (e.g. ``high < low``); empty if nothing."""
        return []

    def draw(self, size: int):
        """Return *size* raw samples as a numpy array."""
        raise NotImplementedError(self)

    def mean(self) -> float:
        """The mean of the raw distribution (before rounding and clipping)."""
        raise NotImplementedError(self)

    def sample_n(self, size: int):
        """*size* samples after rounding (``is_int``) and clipping (``min``/``max``)."""
        import numpy as np

        values = np.asarray(self.draw(size), dtype=float)
        if self.low is not None or self.high is not None:
            values = np.clip(values, self.low, self.high)
        if self.is_int:
            values = np.rint(values).astype(np.int64)
        return values

    def sample(self):
        """One sample (an ``int`` when ``is_int``)."""
        value = self.sample_n(1)[0]
        return int(value) if self.is_int else float(value)


class Scheduler(Component):
    """A cluster scheduling policy: which queued jobs start now, on the free GPUs.

    A cluster framework builds one from a block that names it (its config nests
    ``{"$ref": "#/$defs/scheduler"}``) and calls :meth:`pick` whenever a job
    arrives or GPUs free up. Jobs are the cluster framework's objects; a policy
    reads ``job.gpus`` (GPUs wanted), ``job.arrival_s`` and what else its
    cluster documents.
    """

    def __init__(self, config: dict, context: RunContext):
        self.config = config
        self.context = context

    def pick(self, queue: list, free_gpus: int, now: float) -> list:
        """The jobs of *queue* (oldest first) to start now, in order, using at most *free_gpus*."""
        raise NotImplementedError(self)


class MetricSink(Component):
    """Writes a run's per-record tables and its summary somewhere.

    ``open_table`` is called before the simulation starts and receives rows
    as they happen, so memory does not grow with the number of records.
    ``close(ok)`` commits (``ok=True``) or discards everything written.
    A sink's settings (*config*) come from ``metrics_config.<its name>`` when a plugin declares
    that key (``experiment_fields``).
    """

    def __init__(self, out_dir, config: dict | None = None):
        self.out_dir = out_dir
        self.config = config or {}

    def open_table(self, table: str, columns: list[str]):
        """Return an object with ``append(row)`` and ``extend(rows)``, or None to skip."""
        return None

    def write_summary(self, summary: dict) -> None:
        """Receive the finished summary dict."""

    def close(self, ok: bool) -> list:
        """Commit (ok) or discard; return the paths written."""
        return []

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
    the JSON Schema of its configuration block.
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


# -- hardware ------------------------------------------------------------------------------


class Device:
    """A compute device that prices operations in seconds.

    A plugin registers instances (presets such as ``H100-SXM``). An experiment
    may adjust a preset with :meth:`customize`. The cost methods are the
    public cost oracle behind ``labsim.device(NAME).gemm_time(...)`` and
    ``labsim predict``.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""
    config_schema: dict = OPEN_OBJECT

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


class Topology:
    """How devices are wired: a box (``dgx-h100``) or a cluster of boxes."""

    name: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""
    config_schema: dict = OPEN_OBJECT

    def customize(self, spec: dict) -> Topology:
        """A copy of this topology with the fields of *spec*."""
        raise NotImplementedError(self)


class Collective:
    """A collective operation (``all_reduce`` ...) that prices itself on a topology."""

    name: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""
    config_schema: dict = OPEN_OBJECT

    def time(
        self, nbytes: int, *, ranks: int, device: Any, topology: Any = None, algorithm: str = "auto"
    ) -> float:
        """Seconds for one call moving *nbytes* (the nccl-tests "size") over *ranks*."""
        raise NotImplementedError(self)


# -- simulation components ---------------------------------------------------------------


class Framework(Component):
    """A serving or training engine running inside the simulation.

    The orchestrator constructs it with its experiment-file entry, calls
    :meth:`start` once, and feeds it requests through :meth:`submit` (when it
    is a target of the workload). When the run ends it calls :meth:`summary`.

    A framework tells listeners (closed-loop clients, sessions) when a request
    has finished by calling :meth:`notify_finished`.

    ``summary_schema`` describes its section of summary.json (default: any object);
    ``headline`` lists ``(label, dotted.path)`` rows for the result table (default: none,
    and the table shows the section's top-level numbers).
    """

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

    def is_idle(self) -> bool:
        """True when nothing is queued or running (the run may end)."""
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
    """Generates requests for one target framework.

    The orchestrator builds one copy per target, each drawing from identical
    random streams, so every framework sees the identical request stream.
    """

    def __init__(self, config: dict, context: RunContext):
        self.config = config
        self.context = context

    def start(self, target: Framework) -> None:
        """Start the SimPy processes that call ``target.submit(request)``."""
        raise NotImplementedError(self)

    def is_done(self) -> bool:
        """True once no more requests will be generated."""
        raise NotImplementedError(self)

    def summary(self) -> dict:
        """Facts about the generated stream for ``summary.json`` (may be empty)."""
        return {}


class Distribution(Component):
    """A random distribution configured by a ``*_dist_config`` block.

    ``is_int: true`` rounds samples to integers; ``min`` and ``max`` clip.
    """

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


class MetricSink(Component):
    """Writes a run's per-record tables and its summary somewhere.

    ``open_table`` is called before the simulation starts and receives rows
    as they happen, so memory does not grow with the number of records.
    ``close(ok)`` commits (``ok=True``) or discards everything written.
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

"""The registered collectives and the way third parties add algorithms.

Eight operations are registered (``labsim list collectives``): ``all_reduce``,
``all_gather``, ``reduce_scatter``, ``all_to_all``, ``broadcast``, ``reduce``,
``gather`` and ``send_recv``. Each is a :class:`CollectiveOp`::

    >>> import labsim
    >>> ar = labsim.get_registry().get("collectives", "all_reduce")        # doctest: +SKIP
    >>> t = ar.time(256 << 20, ranks=8, device=labsim.device("A100-SXM4-80GB"))  # doctest: +SKIP
    >>> ar.bus_bandwidth(256 << 20, t, ranks=8) / 1e9                     # doctest: +SKIP
    210.9...

``algorithm="auto"`` follows NCCL's tuner: price every NCCL algorithm that can
run on the group (ring, tree, two_level, nvls, nvls_tree ...) under every
protocol (LL, LL128, Simple) with the same cost model and take the fastest.
``custom_ar`` is the serving frameworks' choice for tensor parallelism: the
faster of one-shot and two-shot up to 8 MiB, NCCL ``auto`` above (an engine that times
both kernels and keeps the faster, as TensorRT-LLM's AUTO table does). ``vllm_custom_ar`` is
vLLM's own kernel choice by size (:func:`~labsim_collectives.algorithms.vllm_kernel`), with
the same 8 MiB limit.

A third party adds an algorithm by registering an :class:`~labsim_collectives.algorithms.Algorithm`
named ``"<collective>.<algorithm>"`` through the ordinary ``register_collectives``
hook (see the README). There is no second, process-wide table: the operations a
registry holds are bound to it (:meth:`CollectiveOp.bind`) and see exactly the
algorithms registered in that registry, so a registry built for a test, a sweep
worker or a Ray worker prices with the algorithms its plugins registered.
"""

from __future__ import annotations

import math

import labsim
from labsim import hookimpl
from labsim.errors import UsageError

from labsim_collectives import params as P
from labsim_collectives.algorithms import Algorithm, builtin_algorithms, vllm_kernel
from labsim_collectives.model import Group, Priced, price

#: the serving frameworks' custom all-reduce, priced by kernel choice (see the module docs)
CUSTOM_AR_NAMES = ("custom_ar", "vllm_custom_ar")

FACTORS = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "gather": lambda n: (n - 1) / n,
    "send_recv": lambda n: 1.0,
}

#: the built-in algorithms of each collective (plugins add theirs through the registry)
_BUILTIN: dict[str, dict[str, Algorithm]] = {c: {} for c in FACTORS}
for _algo in builtin_algorithms():
    _BUILTIN[_algo.collective][_algo.name] = _algo

_BOXES: dict[tuple, tuple] = {}
_CACHE_LIMIT = 200_000


def _from_registry(registry, collective: str) -> dict[str, Algorithm]:
    """Algorithms plugins registered in *registry* as collectives named ``<collective>.<name>``."""
    found = {}
    for full in registry.names("collectives"):
        prefix, _, name = full.partition(".")
        if name and prefix == collective and name not in ("auto", *CUSTOM_AR_NAMES):
            obj = registry.get("collectives", full)
            if callable(getattr(obj, "plan", None)):
                found[name] = obj
    return found


class CollectiveOp(labsim.Collective):
    """A collective operation that prices itself on a topology (see the module docs)."""

    config_schema = {
        "type": "object",
        "properties": {"algorithm": {"type": "string"}},
        "additionalProperties": False,
    }

    def __init__(self, name: str, aliases: tuple[str, ...], description: str):
        self.name, self.aliases, self.description = name, aliases, description
        self._registry = None
        self._algorithms: dict[str, Algorithm] | None = None
        self._cache: dict[tuple, tuple] = {}

    def bind(self, registry) -> None:
        """Price with the algorithms registered in *registry* besides the built-in ones (the
        registry calls this once every plugin has registered)."""
        self._registry = registry
        self._algorithms = None
        self._cache.clear()

    # -- algorithms --------------------------------------------------------------------------

    def _table(self) -> dict[str, Algorithm]:
        if self._algorithms is None:
            table = dict(_BUILTIN[self.name])
            if self._registry is not None:
                for name, algo in _from_registry(self._registry, self.name).items():
                    table.setdefault(name, algo)
            self._algorithms = table
        return self._algorithms

    def algorithms(self) -> list[str]:
        """Names accepted as ``algorithm=`` (besides ``auto``)."""
        names = sorted(self._table())
        return names + (list(CUSTOM_AR_NAMES) if self.name == "all_reduce" else [])

    # -- pricing -----------------------------------------------------------------------------

    def time(
        self, nbytes: int, *, ranks=8, device=None, topology=None, algorithm: str = "auto"
    ) -> float:
        """Seconds for one call of *nbytes* (the nccl-tests size) over *ranks* (memoised).

        *ranks* is a count (ranks 0..n-1 of the topology, filling node 0 first) or a list of
        global ranks. With no *topology*, the usual server of *device* is used (more of them
        when ranks exceed one server); with one, its own GPU is used (``with_device`` for
        another).
        """
        key_ranks = ranks if isinstance(ranks, int) else tuple(ranks)
        key = (int(nbytes), key_ranks, id(device), id(topology), str(algorithm))
        cache = self._cache
        hit = cache.get(key)
        if hit is not None and hit[1] is device and hit[2] is topology:
            return hit[0]
        seconds = self.cost(
            nbytes, ranks=ranks, device=device, topology=topology, algorithm=algorithm
        )[1].seconds
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = (seconds, device, topology)
        return seconds

    def cost(
        self, nbytes: int, *, ranks=8, device=None, topology=None, algorithm: str = "auto"
    ) -> tuple[str, Priced]:
        """``(algorithm chosen, Priced)``: the full breakdown behind :meth:`time`."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int | float) or nbytes < 0:
            raise UsageError(f"nbytes must be a size in bytes ≥ 0, got {nbytes!r}")
        group = self.group(ranks, device, topology)
        if group.n == 1 or (self.name == "send_recv" and group.ranks[0] == group.ranks[-1]):
            return "none", Priced(0.0, "none", ())
        algorithm = str(algorithm or "auto")
        table = self._table()
        if algorithm in CUSTOM_AR_NAMES and self.name == "all_reduce":
            if (
                nbytes <= P.CUSTOM_AR_MAX_BYTES
                and table["one_shot"].unavailable(group, nbytes) is None
            ):
                if algorithm == "vllm_custom_ar":
                    kernels = [table[vllm_kernel(group.n, nbytes)]]
                else:
                    kernels = [table["one_shot"], table["two_shot"]]
                return self._best(group, nbytes, kernels)
            algorithm = "auto"
        if algorithm == "auto":
            candidates = [
                a
                for a in table.values()
                if getattr(a, "nccl", True)
                and a.unavailable(group, nbytes) is None
                and _auto_skip(a, group, nbytes) is None
            ]
            return self._best(group, nbytes, candidates)
        algo = table.get(algorithm.split(".")[-1])
        if algo is None:
            raise UsageError(
                f"{self.name}: no algorithm {algorithm!r}; available: auto, "
                f"{', '.join(self.algorithms())}"
            )
        reason = algo.unavailable(group, nbytes)
        if reason:
            raise UsageError(f"{self.name} algorithm {algorithm!r} cannot run here: {reason}")
        return self._best(group, nbytes, [algo])

    def _best(self, group: Group, nbytes, algos) -> tuple[str, Priced]:
        best = None
        for algo in algos:
            priced = price(algo.plan(group, nbytes), group.topology, group.device)
            if best is None or priced.seconds < best[1].seconds:
                best = (algo.name.split(".")[-1], priced)
        if best is None:
            raise UsageError(f"{self.name}: no algorithm can run on this group")
        return best

    def group(self, ranks, device=None, topology=None) -> Group:
        """The :class:`Group` of *ranks* on the resolved topology."""
        if isinstance(topology, str):
            topology = labsim.topology(topology)
        if isinstance(device, str):
            device = labsim.device(device)
        count = ranks if isinstance(ranks, int) else len(list(ranks))
        if topology is None:
            if device is None:
                raise UsageError(f"{self.name}: give a device or a topology")
            topology = _box(device, count)
        elif getattr(topology, "device_name", "") is None:
            if device is None:
                raise UsageError(f"topology {topology.name!r} names no device: pass device=")
            topology = topology.with_device(device)
        ranks = topology.check_ranks(ranks)
        return Group(topology, ranks, topology.device)

    # -- nccl-tests bandwidths ---------------------------------------------------------------

    def algo_bandwidth(self, nbytes: float, seconds: float) -> float:
        """nccl-tests algbw = S / t (bytes/s)."""
        return nbytes / seconds if seconds > 0 else math.inf

    def bus_bandwidth(self, nbytes: float, seconds: float, ranks: int) -> float:
        """nccl-tests busbw = algbw × factor (2(n-1)/n all-reduce, (n-1)/n gather/scatter/
        all-to-all, 1 broadcast/reduce/send-recv)."""
        return self.algo_bandwidth(nbytes, seconds) * FACTORS[self.name](int(ranks))


def _auto_skip(algo, group: Group, nbytes) -> str | None:
    skip = getattr(algo, "auto_skip", None)
    return skip(group, nbytes) if callable(skip) else None


def _box(device, ranks: int):
    """The inferred server(s) of *device* for *ranks* GPUs (cached per device object)."""
    from labsim_gpus.topology import box_for_device

    nodes = max(1, math.ceil(ranks / 8))
    key = (id(device), nodes)
    hit = _BOXES.get(key)
    if hit is None or hit[0] is not device:
        hit = (device, box_for_device(device, nodes=nodes))
        _BOXES[key] = hit
    return hit[1]


OPS = (
    CollectiveOp("all_reduce", ("allreduce", "ar"), "All-reduce: sum across ranks, result on all"),
    CollectiveOp("all_gather", ("allgather", "ag"), "All-gather: every rank gets every shard"),
    CollectiveOp("reduce_scatter", ("reducescatter", "rs"), "Reduce-scatter: sum, one shard each"),
    CollectiveOp("all_to_all", ("alltoall", "a2a"), "All-to-all: every rank sends a slice to each"),
    CollectiveOp("broadcast", ("bcast",), "Broadcast from the first rank"),
    CollectiveOp("reduce", (), "Reduce onto the first rank"),
    CollectiveOp("gather", (), "Gather onto the first rank: it receives every rank's shard"),
    CollectiveOp(
        "send_recv",
        ("p2p", "sendrecv", "send", "recv"),
        "Point-to-point send/recv between pipeline stages (first → last rank)",
    ),
)
BY_NAME = {op.name: op for op in OPS}


@hookimpl
def register_collectives(register):
    """A fresh operation of each kind per registry, bound to it once every plugin registered."""
    for op in OPS:
        register(CollectiveOp(op.name, op.aliases, op.description))

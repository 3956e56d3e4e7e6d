"""How fast a job runs where it is placed: its speed on a GPU type and the slowdown of a
placement that is not consolidated.

A job's ``duration_s`` is its run time on the reference GPU type (the first of the cluster's
``gpu_types``, or ``reference_type``) placed on as few nodes as possible under one leaf. Its
*speed* on a placement (work-seconds per wall second) is

    speed = throughput(type) / throughput(reference type) / slowdown(placement)

where each factor comes from the best source that knows the job:

1. a training job given by ``model`` (its duration priced by labsim-training): the iteration
   time labsim-training predicts on that type's device and on the placement's shape (its nodes,
   GPUs per node and leaves: the collectives cross the leaf uplinks and the spine);
2. a job whose ``job_type`` is in the throughput table (``throughputs``; ``builtin:gavel`` is
   Gavel's measured steps per second of 26 job types on K80, P100 and V100 at 1, 2, 4 and 8
   GPUs, consolidated on one server and unconsolidated across servers — Narayanan et al.,
   OSDI'20, stanford-futuredata/gavel ``simulation_throughputs.json``, MIT): the table's ratio;
   a placement on more nodes than the job needs runs at the unconsolidated throughput (the
   table has no separate figure for crossing leaves);
3. otherwise ``locality: {across_nodes, across_leaves}``: slowdown factors you give (default
   1: no slowdown, since no published figure covers an unknown model).
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

from labsim.errors import UsageError

BUILTIN_THROUGHPUTS = {"gavel": "gavel_throughputs.csv"}
THROUGHPUT_COLUMNS = ("gpu_type", "job_type", "num_gpus", "steps_per_s")


def read_throughputs(spec: str, base_dir: Path) -> dict[tuple[str, str, int], tuple[float, float | None]]:
    """``(gpu_type, job_type, num_gpus) → (steps/s consolidated, steps/s unconsolidated or
    None)`` from ``builtin:gavel`` or a CSV with columns gpu_type, job_type, num_gpus,
    steps_per_s (and optionally steps_per_s_unconsolidated)."""
    label = "throughputs"
    if spec.startswith("builtin:"):
        name = spec[8:]
        if name not in BUILTIN_THROUGHPUTS:
            raise UsageError(f"{label}: no built-in table {name!r}; built-in: "
                             f"{', '.join('builtin:' + k for k in BUILTIN_THROUGHPUTS)}")
        path = Path(str(resources.files("labsim_cluster") / "data" / BUILTIN_THROUGHPUTS[name]))
    else:
        path = base_dir / spec
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as ex:
        raise UsageError(f"{label}: cannot read {path}: {ex.strerror}") from None
    table = {}
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in THROUGHPUT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{label}: {path.name} has no column {', '.join(missing)}; it needs "
                             f"{', '.join(THROUGHPUT_COLUMNS)} (and optionally steps_per_s_unconsolidated)")
        for line, row in enumerate(reader, start=2):
            def num(col, kind=float, optional=False):
                raw = (row.get(col) or "").strip()
                if optional and not raw:
                    return None
                try:
                    value = kind(float(raw))
                except ValueError:
                    raise UsageError(f"{label}: {path.name} line {line}, column {col}: {raw!r} is not a "
                                     "number") from None
                if value < 0 or (kind is int and value < 1):
                    raise UsageError(f"{label}: {path.name} line {line}, column {col}: {raw!r}; allowed: "
                                     + ("an integer ≥ 1" if kind is int else "a number ≥ 0"))
                return value
            key = (row["gpu_type"].strip(), row["job_type"].strip(), num("num_gpus", int))
            table[key] = (num("steps_per_s"), num("steps_per_s_unconsolidated", optional=True))
    return table


class Rates:
    """The speed of a job on a GPU type and a placement (see the module docs)."""

    def __init__(self, nodes, per_node: int, type_specs: list[dict], reference: int, table, locality: dict,
                 topology):
        self.nodes = nodes
        self.per_node = per_node
        self.type_specs = type_specs
        self.reference = reference
        self.table = table or {}
        self.sizes = {}                       # (gpu_type, job_type) → sorted GPU counts listed
        for gt, jt, g in self.table:
            self.sizes.setdefault((gt, jt), []).append(g)
        for v in self.sizes.values():
            v.sort()
        self.across_nodes = float(locality.get("across_nodes", 1.0))
        self.across_leaves = float(locality.get("across_leaves", self.across_nodes))
        self.topology = topology
        self._cache: dict[tuple, float] = {}

    # -- the throughput table -----------------------------------------------------------------

    def _row(self, gtype: int, job) -> tuple[float, float | None] | None:
        name = self.type_specs[gtype]["name"]
        sizes = self.sizes.get((name, job.kind))
        if not sizes:
            return None
        fit = [g for g in sizes if g <= job.gpus]
        return self.table[(name, job.kind, fit[-1] if fit else sizes[0])]

    def type_speed(self, job, gtype: int) -> float:
        """Work-seconds per second of *job* on type *gtype*, consolidated (0: it cannot run
        there, e.g. it does not fit in that GPU's memory)."""
        if len(self.type_specs) == 1 and job.pricer is None:
            return 1.0
        key = ("type", job.kind, job.shape, job.gpus, gtype)
        if key in self._cache:
            return self._cache[key]
        speed = 1.0
        if job.pricer is not None and self.type_specs[gtype].get("device"):
            ref = job.pricer.iteration_time(job.shape, job.whole_gpus,
                                            device=self.type_specs[self.reference].get("device"))
            speed = ref / job.pricer.iteration_time(job.shape, job.whole_gpus, device=self.type_specs[gtype]["device"])
        else:
            mine, ref = self._row(gtype, job), self._row(self.reference, job)
            if mine is not None and ref is not None and ref[0] > 0:
                speed = mine[0] / ref[0]
        self._cache[key] = speed
        return speed

    # -- locality -----------------------------------------------------------------------------

    def slowdown(self, job, gtype: int, where: list[tuple[int, int]]) -> float:
        """How much slower *job* runs on *where* than on as few nodes as possible in one leaf."""
        used = len(where)
        least = math.ceil(job.gpus / self.per_node)
        leaves = self.nodes.leaves(where)
        if used <= least and leaves == 1:
            return 1.0
        per = max(g for _, g in where)
        key = ("slow", job.kind, job.shape, job.gpus, gtype, used, per, leaves)
        if key in self._cache:
            return self._cache[key]
        factor = None
        if job.pricer is not None:
            factor = self._model_slowdown(job, gtype, used, per, leaves)
        if factor is None:
            row = self._row(gtype, job) or self._row(self.reference, job)
            if row is not None and row[1] and row[0] > 0 and used > least:
                factor = row[0] / row[1]
        if factor is None:
            factor = self.across_leaves if leaves > 1 else (self.across_nodes if used > least else 1.0)
        self._cache[key] = factor
        return factor

    def _model_slowdown(self, job, gtype: int, used: int, per: int, leaves: int) -> float | None:
        """labsim-training's iteration time on the placement's shape over the consolidated one."""
        device = self.type_specs[gtype].get("device")
        shape = {"nodes": used, "nodes_per_leaf": max(1, math.ceil(used / leaves))}
        if per < self.per_node:
            shape["gpus_per_node"] = per
            shape["nics_per_node"] = min(per, int(getattr(self.topology, "nics_per_node", per)))
        try:
            spread = self.topology.customize(shape)
            spread.validate()
        except UsageError:
            spread = self.topology.customize({"nodes": used, "nodes_per_leaf": shape["nodes_per_leaf"]})
        try:
            packed = job.pricer.iteration_time(job.shape, job.gpus, device=device)
            return job.pricer.iteration_time(job.shape, job.gpus, device=device, topology=spread) / packed
        except UsageError:
            return None


__all__ = ["BUILTIN_THROUGHPUTS", "Rates", "read_throughputs"]

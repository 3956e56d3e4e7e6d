"""Fractional GPUs: several jobs on one GPU under a sharing mode of labsim-sharing.

A job asks for part of one GPU — ``gpu_fraction`` (0 < f < 1), ``mps_percentage`` (MPS's
active thread percentage) or ``mig_profile`` (a MIG GPU instance, e.g. ``3g.40gb``) — and the
cluster (or a node group, ``gpu_types[].sharing``) sets how its GPUs are shared
(``sharing: {mode: time_slicing | mps | mig | exclusive, ...}``). Each mode reads the request it
knows (:data:`USES`: time-slicing ``gpu_fraction``; MPS ``mps_percentage``, else
``gpu_fraction``; MIG ``mig_profile``) and ignores the others, so one trace serves every mode;
``exclusive`` gives each such job a whole GPU (the baseline). The cluster takes a whole GPU for
the first such job and places the next ones beside it while they fit (the fullest shared GPU
that fits first; under MIG, while labsim-sharing's placement of the instances fits the user
guide's layouts); the GPU goes back when its last tenant leaves. A job counts as its share of
the GPU in the quotas, the policies' room, utilisation and cost: ``gpu_fraction``,
``mps_percentage`` / 100, or the MIG instance's compute slices / 7 (as labsim-sharing prices a
MIG instance).

How fast a training job runs beside the others is labsim-sharing's model of the mode
(:mod:`labsim_sharing.modes`), its ``duration_s`` being its time alone on a whole GPU:

- ``time_slicing``: while *n* tenants have work each progresses at ``(1 − switch/slice)/n``
  (``slice_ms``, ``switch_us``: the mode's settings and defaults); alone, at full speed;
- ``mps``: the max-min fair rates of the mode under the SMs, the memory bandwidth and each
  tenant's SM cap (its share), every tenant's work split into a compute-bound and a
  memory-bound share (L2 interference is not modelled here);
- ``mig``: the instance is an isolated smaller device (``labsim_sharing.mig.mig_instance_device``):
  a job given by ``model`` is priced by labsim-training on it (and runs out of memory there if
  its instance's memory slices do not hold it); another job runs at its instance's share of the
  SMs for the compute-bound share of its work and of the memory slices for the memory-bound share.

A training job's memory-bound share is labsim-training's (the bottleneck of its iteration) when
it is given by ``model``, else one half (labsim-sharing's assumption for work that does not
say). An interactive session has work only in its bursts: it takes turns (or SMs) a share of
the time equal to its busy share, independently of the others, and a co-located job's speed is
its rate averaged over which sessions are in a burst. A service is taken to have work all the
time. Services and sessions are not slowed themselves: they hold their GPUs for their lifetime.
"""

from __future__ import annotations

import itertools

from labsim.errors import UsageError

MODES = ("time_slicing", "mps", "mig", "exclusive")
#: MIG jobs' work split when the job does not say (labsim-sharing's ``UNKNOWN_MEMBOUND``)
UNKNOWN_MEMBOUND = 0.5
#: sessions enumerated exactly under MPS; beyond, they are taken as always in a burst
MAX_ENUMERATED = 10

SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["mode"],
    "description": "How jobs that ask for part of a GPU (gpu_fraction, mps_percentage, mig_profile) "
                   "share one: labsim-sharing's modes (time_slicing reads gpu_fraction, mps "
                   "mps_percentage or gpu_fraction, mig mig_profile), or exclusive: a whole GPU each.",
    "properties": {
        "mode": {"enum": list(MODES)},
        "slice_ms": {"type": "number", "exclusiveMinimum": 0,
                     "description": "time_slicing: a context's turn (labsim-sharing's default: 2)."},
        "switch_us": {"type": "number", "minimum": 0,
                      "description": "time_slicing: GPU time lost per context switch (default 50)."},
        "memory_bound_sm_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                  "description": "mps: share of the SMs a memory-bound kernel keeps busy "
                                                 "(default 0.5)."},
    },
}


def _sharing():
    try:
        from labsim_sharing import mig, modes
    except ImportError:
        raise UsageError("sharing: fractional GPUs need labsim-sharing (pip install labsim-sharing)") from None
    return mig, modes


#: the request each mode reads (the others are ignored, so one trace serves every mode)
USES = {"time_slicing": ("gpu_fraction",), "mps": ("mps_percentage", "gpu_fraction"), "mig": ("mig_profile",),
        "exclusive": ("gpu_fraction", "mps_percentage", "mig_profile")}


def share_of(job, spec: dict | None, device, where: str) -> float:
    """The share of a GPU *job* asks for under the node group's sharing *spec* (None: none),
    checked against the mode and the GPU (a bad request exits 2 naming the field). A mode reads
    the request it knows (:data:`USES`) and ignores the others, as labsim-sharing's modes ignore
    the placement keys they do not use."""
    asks = [k for k in ("gpu_fraction", "mps_percentage", "mig_profile") if getattr(job, k)]
    if not asks:
        return 0.0
    if spec is None:
        raise UsageError(f"{where}: job {job.job_id} asks for {asks[0]} but the cluster shares no GPUs; "
                         "set the cluster's sharing: {mode: time_slicing | mps | mig | exclusive}")
    mode = spec["mode"]
    if job.gpus > 1:
        raise UsageError(f"{where}: job {job.job_id} asks for {job.gpus} GPUs and {asks[0]}; "
                         "a fractional job runs on part of one GPU (num_gpus 1)")
    if mode == "exclusive":
        return 1.0
    mine = [k for k in USES[mode] if getattr(job, k)]
    if not mine:
        raise UsageError(f"{where}: job {job.job_id} asks for {asks[0]}; under sharing mode {mode} a job asks "
                         f"for {' or '.join(USES[mode])}"
                         + (" (a GPU instance)" if mode == "mig" else ""))
    if mode == "mig":
        mig, _ = _sharing()
        try:
            table = mig.profiles_of(device)
        except UsageError:
            raise UsageError(f"{where}: job {job.job_id}, mig_profile: {device.name} has no MIG; GPUs with MIG: "
                             f"{', '.join(mig.MIG_PROFILES)}") from None
        if job.mig_profile not in table:
            raise UsageError(f"{where}: job {job.job_id}, mig_profile: {job.mig_profile!r}; {device.name} "
                             f"offers {', '.join(table)}")
        return table[job.mig_profile].compute / 7.0
    field = mine[0]
    share = job.mps_percentage / 100.0 if field == "mps_percentage" else job.gpu_fraction
    if not 0 < share <= 1:
        raise UsageError(f"{where}: job {job.job_id}, {field}: {getattr(job, field)!r}; allowed: "
                         + ("0 < p ≤ 100" if field == "mps_percentage" else "0 < f ≤ 1"))
    return share


class SharedGpu:
    """One GPU several jobs share: its node, GPU type, mode and tenants."""

    __slots__ = ("node", "gtype", "mode", "tenants", "used")

    def __init__(self, node: int, gtype: int, mode: str):
        self.node = node
        self.gtype = gtype
        self.mode = mode
        self.tenants: list = []
        self.used = 0.0           # the tenants' shares


class SharedGpus:
    """The cluster's shared GPUs: where a fractional job fits, and each tenant's speed."""

    def __init__(self, specs: list[dict | None], devices: list):
        self.specs = specs            # per GPU type: its sharing spec, or None
        self.devices = devices        # per GPU type: its catalog device
        self.gpus: list[SharedGpu] = []
        self.of: dict[int, SharedGpu] = {}    # id(job) → its shared GPU
        self._instances: dict[tuple, object] = {}
        self._used = 0.0                      # the shares of every tenant of a shared GPU
        self._efficiency = []
        for spec, device in zip(specs, devices):
            if spec is not None and spec["mode"] == "mig":
                mig, _ = _sharing()
                if getattr(device, "name", "") not in mig.MIG_PROFILES:
                    raise UsageError(f"sharing.mode: mig on {device.name}, which has no MIG; GPUs with MIG: "
                                     f"{', '.join(mig.MIG_PROFILES)}")
            if spec is None or spec["mode"] != "time_slicing":
                self._efficiency.append(1.0)
                continue
            _, modes = _sharing()
            slice_s = float(spec.get("slice_ms", modes.DEFAULT_SLICE_MS)) * 1e-3
            switch_s = float(spec.get("switch_us", modes.DEFAULT_SWITCH_US)) * 1e-6
            if switch_s >= slice_s:
                raise UsageError(f"sharing.switch_us: {switch_s * 1e6:g} µs per switch leaves nothing of a "
                                 f"{slice_s * 1e3:g} ms slice; allowed: less than slice_ms × 1000")
            self._efficiency.append(1.0 - switch_s / slice_s)

    def free_share(self) -> float:
        """Room left on the shared GPUs."""
        return len(self.gpus) - self._used

    def _fits(self, gpu: SharedGpu, job) -> bool:
        if gpu.mode == "mig":
            mig, _ = _sharing()
            table = mig.profiles_of(self.devices[gpu.gtype])
            layout = [table[j.mig_profile] for j in gpu.tenants] + [table[job.mig_profile]]
            return mig.place(layout) is not None
        return gpu.used + job.gpus <= 1.0 + 1e-9

    def find(self, job, gtype: int, node_ok=None) -> SharedGpu | None:
        """The fullest shared GPU of type *gtype* with room for *job* (its node order breaks ties),
        on a node *node_ok* accepts (its CPUs and memory) when given."""
        best = None
        for g in self.gpus:
            if (g.gtype == gtype and self._fits(g, job) and (best is None or g.used > best.used)
                    and (node_ok is None or node_ok(g.node))):
                best = g
        return best

    def open(self, node: int, gtype: int) -> SharedGpu:
        gpu = SharedGpu(node, gtype, self.specs[gtype]["mode"])
        self.gpus.append(gpu)
        return gpu

    def join(self, gpu: SharedGpu, job) -> None:
        gpu.tenants.append(job)
        gpu.used += job.gpus
        self._used += job.gpus
        self.of[id(job)] = gpu

    def leave(self, job) -> SharedGpu | None:
        """Take *job* off its GPU; the GPU if it is now empty (to give back), else None."""
        gpu = self.of.pop(id(job))
        gpu.tenants.remove(job)
        self._used -= job.gpus
        if gpu.tenants:
            gpu.used = sum(j.gpus for j in gpu.tenants)   # summed again: no drift from subtracting
            return None
        self._used = sum(g.used for g in self.gpus if g is not gpu)
        self.gpus.remove(gpu)
        return gpu

    def gpu_of(self, job) -> SharedGpu | None:
        return self.of.get(id(job))

    def instance(self, job):
        """The MIG instance *job* runs on, as the smaller device labsim-sharing makes of it
        (:func:`labsim_sharing.mig.mig_instance_device`); one per GPU type and profile."""
        gpu = self.of[id(job)]
        key = (gpu.gtype, job.mig_profile)
        if key not in self._instances:
            mig, _ = _sharing()
            device = self.devices[gpu.gtype]
            self._instances[key] = mig.mig_instance_device(device, mig.profiles_of(device)[job.mig_profile])
        return self._instances[key]

    # -- speeds -------------------------------------------------------------------------------

    def speeds(self, gpu: SharedGpu) -> dict[int, float]:
        """id(job) → the speed (work-seconds per second, against alone on a whole GPU) of each
        training tenant of *gpu* under its mode (see the module docs)."""
        training = [j for j in gpu.tenants if j.category == "training"]
        if not training or gpu.mode == "exclusive":
            return {}
        if gpu.mode == "mig":
            mig, _ = _sharing()
            device = self.devices[gpu.gtype]
            table = mig.profiles_of(device)
            out = {}
            for j in training:
                if j.pricer is not None:      # labsim-training prices it on the instance itself
                    whole = j.pricer.iteration_time(j.shape, 1, device=device)
                    out[id(j)] = whole / j.pricer.iteration_time(j.shape, 1, device=self.instance(j))
                    continue
                p = table[j.mig_profile]
                sm, mem = p.sms / float(device.sm_count), p.memory / 8.0
                m = _membound(j)
                out[id(j)] = 1.0 / ((1.0 - m) / sm + m / mem)
            return out
        sessions = [j for j in gpu.tenants if j.category == "interactive" and j.busy_share < 1.0]
        steady = [j for j in gpu.tenants if j not in sessions]
        if gpu.mode == "time_slicing":
            return self._time_slicing(gpu, training, steady, sessions)
        return self._mps(gpu, training, steady, sessions)

    def _time_slicing(self, gpu, training, steady, sessions) -> dict[int, float]:
        """Each training tenant's expected ``eff/n`` (1 alone), *n* the tenants with work: the
        steady ones and the sessions in a burst (their count's distribution, exactly)."""
        eff = self._efficiency[gpu.gtype]
        dist = [1.0]                           # P(k sessions in a burst)
        for s in sessions:
            b = s.busy_share
            dist = [(dist[k] if k < len(dist) else 0.0) * (1 - b) + (dist[k - 1] * b if k else 0.0)
                    for k in range(len(dist) + 1)]
        n0 = len(steady)
        speed = sum(p * (1.0 if n0 + k == 1 else eff / (n0 + k)) for k, p in enumerate(dist))
        return {id(j): speed for j in training}

    def _mps(self, gpu, training, steady, sessions) -> dict[int, float]:
        """Each training tenant's rate under labsim-sharing's MPS model, averaged over which
        sessions are in a burst."""
        _, modes = _sharing()
        spec = self.specs[gpu.gtype]
        sm_of = float(spec.get("memory_bound_sm_share", modes.DEFAULT_MEMBOUND_SM))
        exact = sessions if len(sessions) <= MAX_ENUMERATED else []
        always = steady + ([] if exact else sessions)
        out = {id(j): 0.0 for j in training}
        for pick in itertools.product((False, True), repeat=len(exact)):
            p = 1.0
            active = list(always)
            for s, on in zip(exact, pick):
                p *= s.busy_share if on else 1.0 - s.busy_share
                if on:
                    active.append(s)
            if p == 0.0:
                continue
            ms = [_membound(j) for j in active]
            sm = [(1.0 - m) + m * sm_of for m in ms]
            cap = [min(1.0, _cap(j) / s) if s > 0 else 1.0 for j, s in zip(active, sm)]
            rates = modes.Mps._max_min(sm, ms, cap)
            for j, r in zip(active, rates):
                if id(j) in out:
                    out[id(j)] += p * r
        return out


def _membound(job) -> float:
    """The memory-bound share of *job*'s GPU work: labsim-training's for a job given by model,
    a session's cells', else one half."""
    if job.pricer is not None and job.shape is not None:
        return job.pricer.membound(job.shape, 1)
    return job.membound if job.membound is not None else UNKNOWN_MEMBOUND


def _cap(job) -> float:
    """An MPS client's SM cap: its active thread percentage, or its GPU fraction."""
    return job.gpus


__all__ = ["MODES", "SCHEMA", "SharedGpu", "SharedGpus", "share_of"]

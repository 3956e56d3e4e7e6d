"""The sharing modes: ``time_slicing``, ``mps`` and ``mig`` (``exclusive`` is the kernel's).

Each is a :class:`labsim.SharingMode`: it admits the frameworks placed on one GPU (tenants),
says what device each tenant prices its work on, and runs every piece of their GPU work.

- ``time_slicing``: the tenants' CUDA contexts take turns on the whole GPU. While *n* tenants
  have work, each gets ``1/n`` of the time less the context switches (``switch_us`` per slice
  of ``slice_ms``). Memory is not isolated: the tenant whose memory no longer fits fails with a
  CUDA out-of-memory error (recorded; its work never runs).
- ``mps``: the tenants' kernels run at the same time. Each piece of work needs the SMs for its
  compute-bound share and memory bandwidth for its memory-bound share; concurrent pieces get
  max-min fair rates under both capacities and each tenant's SM cap
  (``mps_active_thread_percentage``) and device memory per client
  (``mps_pinned_device_mem_limit_gib``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``: an allocation past
  it fails with an out-of-memory error). A memory-bound kernel still occupies SMs to issue its
  loads (``memory_bound_sm_share``). One fault domain: an injected fatal error in one client
  ends every client on the GPU.
- ``mig``: each tenant owns a GPU instance (``mig_profile``): a smaller device, priced by the
  cost model on its SMs and memory slices, isolated from the others.
"""

from __future__ import annotations

import math

import labsim
from labsim.errors import LabsimError, UsageError

from labsim_sharing.fluid import FluidGpu
from labsim_sharing.l2 import Reuse, extra_traffic, l2_bytes, reuse
from labsim_sharing.mig import mig_instance_device, place, profiles_of

#: The CUDA driver's time slice between contexts on Linux is not documented; 2 ms is the order
#: measured for compute contexts (an assumption; set ``slice_ms`` from your own measurement).
DEFAULT_SLICE_MS = 2.0
#: Saving and restoring a context's state per switch (an assumption of the same order as the
#: compute preemption costs NVIDIA documents, tens of microseconds; set ``switch_us``).
DEFAULT_SWITCH_US = 50.0
#: Share of the SMs a purely memory-bound kernel keeps busy issuing loads (an assumption:
#: half the SMs of an A100/H100 reach most of the HBM bandwidth).
DEFAULT_MEMBOUND_SM = 0.5
#: Intensity of a piece of work whose framework does not say (half compute, half memory).
UNKNOWN_MEMBOUND = 0.5
#: MPS reads a piece's memory-bound share to the nearest 1/64: the roofline split it comes from
#: (bytes / bandwidth against FLOPs / peak) tells no finer, and a serving engine's decode steps,
#: whose share drifts by ~10⁻⁶ a step as their context grows, then keep one sharing state over
#: a run of steps (which fast-forward on a shared GPU needs).
INTENSITY_STEPS = 64
#: sets of running pieces whose MPS rates are kept (a day of eight tenants meets a few thousand)
RATES_MEMO = 1 << 14


#: columns of the opt-in ``gpu_sharing`` table (``record_timeline: true``)
TIMELINE_COLUMNS = ["gpu", "time_s", "tenants_running", "sm_share", "bandwidth_share", "memory_gib"]

RECORD_TIMELINE = {"type": "boolean", "default": False,
                   "description": "Write a row to the gpu_sharing table (gpu_sharing.csv) at every "
                                  "change: tenants running, share of SMs and of memory bandwidth in "
                                  "use, memory held."}


class _Shared(labsim.SharingMode):
    """What every mode here keeps: tenants, their placements, busy time and failures."""

    def __init__(self, config, gpu, context):
        super().__init__(config, gpu, context)
        self.placements: dict[str, dict] = {}
        self.memory: dict[str, float] = {}
        self.failed: dict[str, dict] = {}
        self.work: dict[str, list[float]] = {}       # tenant → [alone-seconds, seconds taken]
        self.busy_s = 0.0
        self._busy_since: float | None = None
        self.timeline = (context.metrics.table("gpu_sharing", TIMELINE_COLUMNS)
                         if config.get("record_timeline") else None)
        self._last_row = None

    def admit(self, tenant, placement):
        if tenant not in self.tenants:
            self.tenants.append(tenant)
        self.placements[tenant] = dict(placement)
        fluid = getattr(self, "fluid", None)
        if fluid is not None:
            fluid.rank(tenant)                    # the tenants' order in the rates: admission

    def _on_change(self, now, pieces) -> None:
        if pieces and self._busy_since is None:
            self._busy_since = now
        elif not pieces and self._busy_since is not None:
            self.busy_s += now - self._busy_since
            self._busy_since = None
        if self.timeline is not None:
            self._timeline_row(now, pieces)

    def _timeline_row(self, now, pieces) -> None:
        """One row of the opt-in ``gpu_sharing`` table: from *now* on, until the next row, this
        many tenants run and use this share of the SMs and of the memory bandwidth."""
        sm_of = getattr(self, "sm_of_membound", 1.0)
        sm = sum(p.rate * ((1.0 - p.membound) + p.membound * sm_of) for p in pieces)
        bw = sum(p.rate * (p.membound + p.extra) for p in pieces)
        running = len({p.tenant for p in pieces})
        held = sum(v for t, v in self.memory.items() if t not in self.failed) / 2**30
        row = (running, min(1.0, sm), min(1.0, bw), held)
        if row != self._last_row:                 # the rates settle at every change; rows record new values
            self._last_row = row
            self.timeline.append((self.gpu.gpu_id, now, *row))

    def _record(self, tenant, alone, began, event):
        env = self.context.env
        event.callbacks.append(lambda _e: self._account(tenant, alone, env.now - began))
        return event

    def _account(self, tenant, alone, taken) -> None:
        acc = self.work.setdefault(tenant, [0.0, 0.0])
        acc[0] += alone
        acc[1] += taken

    def _account_all(self, tenant, alones, takens) -> None:
        """:meth:`_account` of each piece in turn (the same sums, bit for bit)."""
        acc = self.work.setdefault(tenant, [0.0, 0.0])
        a, t = acc
        for x in alones:
            a += x
        for x in takens:
            t += x
        acc[0], acc[1] = a, t

    def intensity(self, membound: float | None) -> float:
        """The memory-bound share this mode runs a piece of work at (what its rates depend on)."""
        return 0.0

    def span(self, tenant, membound_of, steps):
        """A :class:`labsim_sharing.fluid.Lease` for a run of at most *steps* consecutive
        pieces of *tenant*'s work that the tenant times itself (see
        :meth:`labsim.SharingMode.span`): as many of them as share the first one's intensity
        (``membound_of(i)``: piece *i*'s memory-bound share; taken as monotone in *i*, as a
        decode step's is in its context), or None when fewer than two do."""
        fluid = getattr(self, "fluid", None)
        if fluid is None or tenant in self.failed or steps < 2:
            return None
        key = self.intensity
        first = key(membound_of(0))
        n = steps
        if key(membound_of(n - 1)) != first:      # the first piece of another intensity
            lo, hi = 0, n - 1                     # key(lo) == first, key(hi) != first
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if key(membound_of(mid)) == first:
                    lo = mid
                else:
                    hi = mid
            n = hi
        if n < 2:
            return None
        return fluid.lease(tenant, first, n, lambda alones, takens: self._account_all(tenant, alones, takens))

    def claim_memory(self, tenant: str, nbytes: float) -> None:
        """*tenant* allocates *nbytes* on this GPU: with no memory isolation, the tenant whose
        allocation no longer fits fails with a CUDA out-of-memory error."""
        self.memory[tenant] = float(nbytes)
        capacity = float(getattr(self.gpu.device, "memory_bytes", 0) or 0)
        used = sum(v for t, v in self.memory.items() if t not in self.failed)
        if capacity and used > capacity:
            others = used - nbytes
            self.fail(tenant, "CUDA OOM", f"needs {nbytes / 2**30:.1f} GiB; {others / 2**30:.1f} GiB of "
                                          f"{capacity / 2**30:.1f} already held by the other tenants")

    def fail(self, tenant: str, kind: str, detail: str) -> None:
        """Record that *tenant* failed here (it runs no more work)."""
        if tenant not in self.failed:
            self.failed[tenant] = {"kind": kind, "at_s": self.context.env.now, "detail": detail}

    def never(self):
        """The event a failed tenant's work waits on: it never fires."""
        return self.context.env.event()

    def summary(self) -> dict:
        fluid = getattr(self, "fluid", None)
        for p in fluid.pieces if fluid is not None else ():
            if p.lease is not None:
                p.lease.flush()
        busy = self.busy_s
        if self._busy_since is not None:
            busy += self.context.env.now - self._busy_since
        tenants = {}
        for t in self.tenants:
            alone, taken = self.work.get(t, [0.0, 0.0])
            tenants[t] = {"work_alone_s": alone, "work_taken_s": taken,
                          "slowdown": taken / alone if alone > 0 else None}
            if t in self.memory:
                tenants[t]["memory_gib"] = self.memory[t] / 2**30
        out = {"mode": self.name, "tenants": tenants, "busy_s": busy,
               "busy_fraction": busy / self.context.env.now if self.context.env.now > 0 else 0.0}
        if self.failed:
            out["failures"] = dict(self.failed)
        return out


class TimeSlicing(_Shared):
    """Tenants' contexts take turns on the whole GPU; no memory isolation."""

    name = "time_slicing"
    config_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "type": {},
            "slice_ms": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_SLICE_MS,
                         "description": "Length of a context's turn (the driver's time slice; "
                                        "default an assumption, see the README)."},
            "switch_us": {"type": "number", "minimum": 0, "default": DEFAULT_SWITCH_US,
                          "description": "GPU time lost per context switch."},
            "record_timeline": RECORD_TIMELINE,
            "replicas": {"type": "integer", "minimum": 1,
                         "description": "The GPU operator's time-slicing replicas: how many "
                                        "tenants the GPU is advertised to (more are refused)."},
        },
    }

    def __init__(self, config, gpu, context):
        super().__init__(config, gpu, context)
        slice_s = float(config.get("slice_ms", DEFAULT_SLICE_MS)) * 1e-3
        self.efficiency = max(0.0, 1.0 - float(config.get("switch_us", DEFAULT_SWITCH_US)) * 1e-6 / slice_s)
        self.fluid = FluidGpu(context.env, self._rates, self._on_change)

    def admit(self, tenant, placement):
        replicas = self.config.get("replicas")
        if replicas and tenant not in self.tenants and len(self.tenants) >= replicas:
            raise UsageError(f"placement: GPU {self.gpu.gpu_id} is advertised as {replicas} time-sliced "
                             f"replica(s), all taken by {', '.join(self.tenants)}; raise "
                             "hardware_profile.sharing.replicas or place the tenant on another GPU")
        super().admit(tenant, placement)

    def _rates(self, pieces):
        tenants = {p.tenant for p in pieces}
        n = len(tenants)
        share = 1.0 if n == 1 else self.efficiency / n
        per = {t: sum(1 for p in pieces if p.tenant == t) for t in tenants}
        return [share / per[p.tenant] for p in pieces]

    def execute(self, tenant, seconds, membound=None):
        if tenant in self.failed:
            return self.never()
        return self._record(tenant, seconds, self.context.env.now,
                            self.fluid.submit(tenant, seconds, 0.0))

    def is_alone(self, tenant):
        return len(self.tenants) <= 1


class Mps(_Shared):
    """Tenants' kernels run concurrently, sharing SMs and memory bandwidth."""

    name = "mps"
    config_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "type": {},
            "memory_bound_sm_share": {
                "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": DEFAULT_MEMBOUND_SM,
                "description": "Share of the SMs a memory-bound kernel keeps busy (an assumption)."},
            "record_timeline": RECORD_TIMELINE,
            "l2_interference": {
                "type": "boolean", "default": True,
                "description": "Co-running kernels evict each other's operands from L2: the "
                               "re-reads lost go to DRAM (derived from each tenant's model and "
                               "the device; see the README)."},
            "fault_at_s": {"type": "number", "minimum": 0,
                           "description": "Inject a fatal error (e.g. an illegal memory access) in "
                                          "the first tenant at this time: MPS clients share one "
                                          "fault domain, so every tenant on the GPU ends."},
        },
    }

    def __init__(self, config, gpu, context):
        super().__init__(config, gpu, context)
        self.sm_of_membound = float(config.get("memory_bound_sm_share", DEFAULT_MEMBOUND_SM))
        self.fluid = FluidGpu(context.env, self._rates, self._on_change)
        self.caps: dict[str, float] = {}
        self.limits: dict[str, float] = {}     # per-client device-memory limits, bytes
        self.l2 = l2_bytes(gpu.device) if config.get("l2_interference", True) else None
        self.reuse: dict[str, Reuse | None] = {}   # tenant → what its GEMMs need of the L2
        self._solved: dict[tuple, tuple] = {}      # (tenant, intensity) of each piece → _solve's
        if config.get("fault_at_s") is not None:
            context.env.process(self._fault(float(config["fault_at_s"])))

    def admit(self, tenant, placement):
        pct = placement.get("mps_active_thread_percentage", 100)
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 < pct <= 100:
            raise UsageError(f"placement.mps_active_thread_percentage: {pct!r}; allowed: a percentage "
                             "of the GPU's SMs, 0 < p ≤ 100")
        limit = placement.get("mps_pinned_device_mem_limit_gib")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0):
            raise UsageError(f"placement.mps_pinned_device_mem_limit_gib: {limit!r}; allowed: GiB of device "
                             "memory this client may allocate, a number > 0")
        super().admit(tenant, placement)
        self.caps[tenant] = float(pct) / 100.0
        self._solved.clear()
        if limit is not None:
            self.limits[tenant] = float(limit) * 2**30

    def claim_memory(self, tenant: str, nbytes: float) -> None:
        """Past its own limit (``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``) a client's allocation fails,
        whatever the others hold; within it, the GPU's memory is shared as under time-slicing."""
        limit = self.limits.get(tenant)
        if limit is not None and nbytes > limit:
            self.memory[tenant] = float(nbytes)
            self.fail(tenant, "CUDA OOM", f"needs {nbytes / 2**30:.1f} GiB; its MPS limit "
                                          f"(CUDA_MPS_PINNED_DEVICE_MEM_LIMIT) is {limit / 2**30:.1f} GiB")
            return
        super().claim_memory(tenant, nbytes)

    def _fault(self, at):
        yield self.context.env.timeout(at)
        if not self.tenants:
            return
        first = self.tenants[0]
        for t in self.tenants:
            self.fail(t, "MPS fault", f"fatal error in {first!r}; MPS clients share one fault domain")

    def _reuse_of(self, tenant: str) -> Reuse | None:
        """*tenant*'s :class:`~labsim_sharing.l2.Reuse`, from the model and precision of its
        entry in ``frameworks_to_test`` (None when it names none known here)."""
        if tenant not in self.reuse:
            found = None
            entries = (getattr(self.context, "config", None) or {}).get("frameworks_to_test") or []
            entry = next((e for e in entries if isinstance(e, dict) and e.get("name") == tenant), None)
            cfg = (entry or {}).get("config") or {}
            model = cfg.get("model") or (cfg.get("job") or {}).get("model")
            if model is not None:
                from labsim_training.job import resolve_model

                precision = str(cfg.get("precision") or cfg.get("dtype") or "bf16")
                try:
                    found = reuse(self.gpu.device, resolve_model(self.context, model),
                                  "bf16" if precision == "auto" else precision)
                except LabsimError:
                    found = None                   # the framework reports its own model errors
            self.reuse[tenant] = found
        return self.reuse[tenant]

    def _rates(self, pieces):
        """Max-min fair progress rates under the SM and bandwidth capacities and the caps.

        With ``l2_interference`` each piece's bandwidth demand also carries the operand
        re-reads it loses from L2 to the others (:func:`labsim_sharing.l2.extra_traffic`),
        the others' DRAM traffic taken at the rates found without it (one correction).
        They depend on nothing but each piece's tenant and intensity, in order (the caps are
        fixed once the tenants are admitted): a set of running pieces seen before is looked up."""
        key = tuple([(p.tenant, p.membound) for p in pieces])
        hit = self._solved.get(key)
        if hit is None:
            if len(self._solved) >= RATES_MEMO:
                self._solved.clear()
            hit = self._solved[key] = self._solve(pieces)
        rate, extra = hit
        for p, e in zip(pieces, extra):
            p.extra = e
        return rate

    def _solve(self, pieces):
        """(rates, extra bandwidth demands) of *pieces*: :meth:`_rates` worked out."""
        sm = [(1.0 - p.membound) + p.membound * self.sm_of_membound for p in pieces]
        cap = [min(1.0, self.caps.get(p.tenant, 1.0) / s) if s > 0 else 1.0 for p, s in zip(pieces, sm)]
        bw = [p.membound for p in pieces]
        rate = self._max_min(sm, bw, cap)
        extra = [0.0] * len(pieces)
        if getattr(self, "l2", None) is not None and len(pieces) > 1:
            profiles = {p.tenant: self._reuse_of(p.tenant) for p in pieces}
            extra = extra_traffic(pieces, profiles, rate, self.l2, self.gpu.device.mem_bw)
            if any(extra):
                bw = [m + e for m, e in zip(bw, extra)]
                rate = self._max_min(sm, bw, cap)
        return rate, extra

    @staticmethod
    def _max_min(sm, bw, cap):
        """Progressive filling: raise every rate together, freezing those that meet their cap
        or a full resource (SMs, bandwidth) they use."""
        n = len(sm)
        rate = [0.0] * n
        frozen = [False] * n
        sm_left, bw_left = 1.0, 1.0
        while not all(frozen):
            live = [i for i in range(n) if not frozen[i]]
            d_sm = sum(sm[i] for i in live)
            d_bw = sum(bw[i] for i in live)
            step = min([cap[i] - rate[i] for i in live]
                       + ([sm_left / d_sm] if d_sm > 0 else []) + ([bw_left / d_bw] if d_bw > 0 else []))
            step = max(0.0, step)
            for i in live:
                rate[i] += step
            sm_left -= step * d_sm
            bw_left -= step * d_bw
            for i in live:
                if (cap[i] - rate[i] <= 1e-12 or (sm[i] > 0 and sm_left <= 1e-12)
                        or (bw[i] > 0 and bw_left <= 1e-12)):
                    frozen[i] = True
        return rate

    def execute(self, tenant, seconds, membound=None):
        if tenant in self.failed:
            return self.never()
        return self._record(tenant, seconds, self.context.env.now,
                            self.fluid.submit(tenant, seconds, self.intensity(membound)))

    def intensity(self, membound):
        """The piece's memory-bound share to the nearest 1/:data:`INTENSITY_STEPS`."""
        mb = UNKNOWN_MEMBOUND if membound is None else min(1.0, max(0.0, float(membound)))
        return math.floor(mb * INTENSITY_STEPS + 0.5) / INTENSITY_STEPS

    def is_alone(self, tenant):
        return len(self.tenants) <= 1 and self.caps.get(tenant, 1.0) >= 1.0 and not self.config.get("fault_at_s")

    def span(self, tenant, membound_of, steps):
        if self.config.get("fault_at_s") is not None:
            return None                            # a fault ends pieces in flight: one at a time
        return super().span(tenant, membound_of, steps)


class Mig(_Shared):
    """Each tenant owns a GPU instance: a smaller, isolated device."""

    name = "mig"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {"type": {}}}

    def __init__(self, config, gpu, context):
        super().__init__(config, gpu, context)
        self.instances: dict[str, object] = {}

    def _profile(self, tenant, placement, device):
        table = profiles_of(device)
        name = placement.get("mig_profile")
        if name not in table:
            raise UsageError(f"placement.mig_profile: {name!r} for {tenant!r}; {device.name} offers "
                             f"{', '.join(table)}")
        return table[name]

    def tenant_device(self, tenant, placement, device):
        profile = self._profile(tenant, placement, device)
        layout = [self.instances[t] for t in self.instances if t != tenant] + [profile]
        if place(layout) is None:
            held = ", ".join(f"{t}: {p.name}" for t, p in self.instances.items() if t != tenant)
            free = [n for n, p in profiles_of(device).items()
                    if place([self.instances[t] for t in self.instances if t != tenant] + [p]) is not None]
            raise UsageError(f"placement.mig_profile: {profile.name} for {tenant!r} does not fit on GPU "
                             f"{self.gpu.gpu_id} beside {held or 'nothing'}; what still fits: "
                             f"{', '.join(free) or 'nothing'}")
        self.instances[tenant] = profile
        return mig_instance_device(device, profile)

    def admit(self, tenant, placement):
        if tenant not in self.instances:  # placed without asking for its device first
            self.tenant_device(tenant, placement, self.gpu.device)
        super().admit(tenant, placement)

    def execute(self, tenant, seconds, membound=None):
        # the tenant priced its work on its own instance: nothing else touches it
        env = self.context.env
        return self._record(tenant, seconds, env.now, env.timeout(seconds))

    def is_alone(self, tenant):
        return True

    def summary(self) -> dict:
        out = super().summary()
        out.pop("busy_s", None)
        out.pop("busy_fraction", None)
        for t, p in self.instances.items():
            out["tenants"].setdefault(t, {})["mig_profile"] = p.name
        return out

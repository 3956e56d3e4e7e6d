"""MIG (Multi-Instance GPU): the GPU instance profiles of each MIG-capable GPU, which layouts a GPU
can hold, and each instance as a smaller device the cost model prices.

Source of every profile: NVIDIA Multi-Instance GPU User Guide, "Supported MIG Profiles"
(https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html): the
fraction of memory (of 8 memory slices, with their share of L2 and memory controllers) and of
compute (of 7 GPU slices), the number of instances a GPU can hold, and the placement diagrams
(the memory slice an instance of each size may start at). SMs per GPU slice: 14 on A100 (98 of
its 108 SMs are usable under MIG) and 16 on H100/H200 (3g = 60 and 4g = 64 SMs, 7g = all 132),
as ``nvidia-smi mig -lgip`` lists them (same guide, "List GPU Instance Profiles").
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim.errors import UsageError


@dataclass(frozen=True)
class MigProfile:
    """One GPU instance profile: compute slices (of 7), memory slices (of 8), SMs, the most
    instances of it one GPU holds, and the memory slices an instance may start at."""

    name: str
    compute: int
    memory: int
    sms: int
    max_instances: int
    starts: tuple[int, ...]


def _table(mem: dict[str, str], sms: tuple[int, int, int, int, int]) -> dict[str, MigProfile]:
    """The six profiles of an 8-memory-slice GPU; *mem* names each by its memory, *sms* = SMs of
    1g, 2g, 3g, 4g and 7g."""
    s1, s2, s3, s4, s7 = sms
    rows = [
        MigProfile(f"1g.{mem['1']}", 1, 1, s1, 7, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(f"1g.{mem['2']}", 1, 2, s1, 4, (0, 2, 4, 6)),
        MigProfile(f"2g.{mem['2']}", 2, 2, s2, 3, (0, 2, 4)),
        MigProfile(f"3g.{mem['4']}", 3, 4, s3, 2, (0, 4)),
        MigProfile(f"4g.{mem['4']}", 4, 4, s4, 1, (0,)),
        MigProfile(f"7g.{mem['8']}", 7, 8, s7, 1, (0,)),
    ]
    return {p.name: p for p in rows}


A100_SMS = (14, 28, 42, 56, 98)
H100_SMS = (16, 32, 60, 64, 132)

#: device name → profile name → :class:`MigProfile` (MIG user guide, see the module docs)
MIG_PROFILES: dict[str, dict[str, MigProfile]] = {
    "A100-SXM4-40GB": _table({"1": "5gb", "2": "10gb", "4": "20gb", "8": "40gb"}, A100_SMS),
    "A100-PCIe-40GB": _table({"1": "5gb", "2": "10gb", "4": "20gb", "8": "40gb"}, A100_SMS),
    "A100-SXM4-80GB": _table({"1": "10gb", "2": "20gb", "4": "40gb", "8": "80gb"}, A100_SMS),
    "A100-PCIe-80GB": _table({"1": "10gb", "2": "20gb", "4": "40gb", "8": "80gb"}, A100_SMS),
    "H100-SXM": _table({"1": "10gb", "2": "20gb", "4": "40gb", "8": "80gb"}, H100_SMS),
    "H100-PCIe": _table({"1": "10gb", "2": "20gb", "4": "40gb", "8": "80gb"}, H100_SMS),
    "H200-SXM": _table({"1": "18gb", "2": "35gb", "4": "71gb", "8": "141gb"}, H100_SMS),
}


def profiles_of(device) -> dict[str, MigProfile]:
    """The MIG profiles of *device*, or a UsageError naming the GPUs that have MIG."""
    table = MIG_PROFILES.get(getattr(device, "name", ""))
    if table is None:
        raise UsageError(f"placement.mig_profile: {device.name} has no MIG; GPUs with MIG: "
                         f"{', '.join(MIG_PROFILES)}")
    return table


def place(layout: list[MigProfile]) -> list[int] | None:
    """Start memory slices for the instances of *layout*, in order, without overlap and
    within 7 compute slices; None when the GPU cannot hold them."""
    if sum(p.compute for p in layout) > 7:
        return None
    for p in set(layout):
        if layout.count(p) > p.max_instances:
            return None
    order = sorted(range(len(layout)), key=lambda i: -layout[i].memory)  # big ones first
    used = [False] * 8
    starts: list[int | None] = [None] * len(layout)

    def fit(k: int) -> bool:
        if k == len(order):
            return True
        i = order[k]
        p = layout[i]
        for s in p.starts:
            span = range(s, s + p.memory)
            if s + p.memory <= 8 and not any(used[x] for x in span):
                for x in span:
                    used[x] = True
                starts[i] = s
                if fit(k + 1):
                    return True
                for x in span:
                    used[x] = False
        return False

    return [int(s) for s in starts] if fit(0) else None


def mig_instance_device(device, profile: MigProfile):
    """*device* as one MIG instance of *profile*: its SMs (and their share of the tensor-core
    peak), its memory slices' capacity and bandwidth."""
    sm_share = profile.sms / float(device.sm_count)
    mem_share = profile.memory / 8.0
    return device.copy(
        name=f"{device.name} MIG {profile.name}",
        sm_count=profile.sms,
        peak_flops={k: v * sm_share for k, v in device.peak_flops.items()},
        mem_bw=device.mem_bw * mem_share,
        memory_bytes=int(device.memory_bytes * mem_share),
        price_per_hour=(device.price_per_hour or 0.0) * profile.compute / 7.0 if device.price_per_hour else
        device.price_per_hour,
        aliases=(),
    )

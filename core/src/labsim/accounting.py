"""Accounting: the GPUs each framework held and used, and what they cost.

A kernel service every framework reports into, so serving engines, training
jobs and cluster policies bill alike. :meth:`labsim.hardware.Hardware.allocate`
opens a hold when it hands GPUs out; a framework closes it with
:meth:`Accounting.release` when its work is over (a serving engine: when its
last request has left), and reports the GPU-seconds it kept busy. Each
framework is billed for its own GPUs over its own time, at each GPU's
``price_per_hour`` (a device's datasheet field, USD per GPU-hour):

>>> acct = Accounting(lambda: 0.0)                               # doctest: +SKIP
>>> acct.hold("vllm", gpus)                                      # doctest: +SKIP
>>> acct.release("vllm", at=3600.0)                              # doctest: +SKIP
>>> acct.bill("vllm", end=3600.0)["usd"]                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hold:
    """GPUs one owner held from ``start_s`` until ``end_s`` (None: still held)."""

    gpus: list
    start_s: float
    end_s: float | None = None


@dataclass
class OwnerAccount:
    holds: list[Hold] = field(default_factory=list)
    busy_gpu_s: float = 0.0


class Accounting:
    """GPU-seconds held and busy per owner (a framework instance's name), and their cost.

    :param clock: a function returning the simulated time now.
    """

    def __init__(self, clock):
        self._clock = clock
        self._accounts: dict[str, OwnerAccount] = {}

    def _account(self, owner: str) -> OwnerAccount:
        return self._accounts.setdefault(owner, OwnerAccount())

    def hold(self, owner: str, gpus: list) -> None:
        """*owner* holds *gpus* from now on (:meth:`Hardware.allocate` calls this)."""
        self._account(owner).holds.append(Hold(list(gpus), self._clock()))

    def release(self, owner: str, at: float | None = None) -> None:
        """*owner* gives back every GPU it holds, now or at simulated time *at*."""
        end = self._clock() if at is None else float(at)
        for hold in self._account(owner).holds:
            if hold.end_s is None:
                hold.end_s = max(hold.start_s, end)

    def add_busy(self, owner: str, gpu_seconds: float) -> None:
        """*owner* kept GPUs busy for *gpu_seconds* more (summed over its GPUs)."""
        self._account(owner).busy_gpu_s += float(gpu_seconds)

    def owners(self) -> list[str]:
        return list(self._accounts)

    def bill(self, owner: str, end: float | None = None) -> dict:
        """What *owner* held and owes; holds still open count until *end* (default: now).

        Keys: ``num_gpus`` (the most held at once), ``held_s`` (wall time of its
        holds), ``gpu_hours``, ``busy_gpu_hours``, ``usd`` and ``usd_per_hour``
        (the price of its GPUs per hour held).
        """
        end = self._clock() if end is None else float(end)
        account = self._account(owner)
        gpu_s = usd = 0.0
        held_s = 0.0
        num_gpus = 0
        price_per_hour = 0.0
        for hold in account.holds:
            stop = hold.end_s if hold.end_s is not None else max(end, hold.start_s)
            seconds = stop - hold.start_s
            hourly = sum(gpu_price(gpu) for gpu in hold.gpus)
            gpu_s += seconds * len(hold.gpus)
            usd += hourly * seconds / 3600.0
            held_s = max(held_s, seconds)
            num_gpus += len(hold.gpus)
            price_per_hour += hourly
        return {
            "num_gpus": num_gpus,
            "held_s": held_s,
            "gpu_hours": gpu_s / 3600.0,
            "busy_gpu_hours": account.busy_gpu_s / 3600.0,
            "usd": usd,
            "usd_per_hour": price_per_hour,
        }


def gpu_price(gpu) -> float:
    """USD per hour of one GPU (its device's ``price_per_hour``; 0 when unknown)."""
    device = getattr(gpu, "device", gpu)
    return float(getattr(device, "price_per_hour", 0.0) or 0.0)


def peak_flops(device, dtype: str) -> float:
    """The device's dense peak FLOP/s in *dtype* (bf16's when it lists no such dtype; 0 unknown)."""
    peaks = getattr(device, "peak_flops", None) or {}
    try:
        return float(peaks[dtype])
    except (KeyError, TypeError):
        return float(peaks.get("bf16", 0.0)) if hasattr(peaks, "get") else 0.0


def utilisation(*, busy_s: float, groups: int, window_s: float, flops: float, bytes_moved: float,
                device, dtype: str, gpus_per_group: float = 1.0) -> dict:
    """How hard a framework's GPUs worked — one formula for serving, training and clusters.

    :param busy_s: seconds its GPU groups (replicas, pipeline stages) were busy, summed over them.
    :param groups: how many groups *busy_s* sums over.
    :param window_s: the seconds measured (after warm-up).
    :param flops: model FLOPs done in *busy_s* (no recompute), per GPU of a group.
    :param bytes_moved: DRAM bytes read and written in *busy_s*, per GPU of a group.

    ``busy_fraction`` is the mean group's busy share of the window; ``mfu`` the FLOPs over
    what the busy time could do at the device's peak in *dtype*; ``mbu`` the same for memory
    bandwidth.
    """
    peak = peak_flops(device, dtype)
    bw = float(getattr(device, "mem_bw", 0.0) or 0.0)
    busy = busy_s / groups if groups else 0.0
    return {
        "busy_fraction": busy / window_s if window_s > 0 else None,
        "mfu": (flops * gpus_per_group / (busy_s * peak * gpus_per_group) if busy_s > 0 and peak else None),
        "mbu": (bytes_moved / (busy_s * bw) if busy_s > 0 and bw else None),
    }

"""Collectives as SimPy processes that share link bandwidth.

A :class:`Fabric` wraps one topology inside a SimPy environment. Every
collective runs as a process: for each phase of its plan it waits the
phase's latency, then *transfers*: a flow that needs, per link direction it
crosses, a share ``u`` of that link's effective bandwidth when it runs alone
(``u = 1`` on its bottleneck). Flows that are active at the same time get
**max-min fair** rates by progressive filling — every flow's rate rises
together until a link is full (``Σ rate · u ≤ 1``) or the flow reaches its
stand-alone speed; the flows of a full link freeze and the others keep
rising. Rates are recomputed whenever a flow starts or finishes, so a
tensor-parallel all-reduce overlapping a data-parallel one on the same
NVLinks, or two jobs crossing one oversubscribed spine, both slow down, while
collectives on disjoint links do not notice each other.

    >>> import simpy
    >>> from labsim_collectives.sim import Fabric
    >>> env = simpy.Environment()
    >>> fabric = Fabric(env, topology)                                   # doctest: +SKIP
    >>> def job(env):
    ...     seconds = yield from fabric.collective("all_reduce", 64 << 20, ranks=range(8))
    >>> env.process(job(env)); env.run()                                 # doctest: +SKIP

``fabric.run(...)`` returns the same thing as a SimPy process (an event to
``yield``). ``fabric.records`` lists every finished call with its start, end
and stand-alone time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labsim.errors import UsageError

_EPS = 1e-12


@dataclass(eq=False)
class Flow:
    """The link-bound part of one phase: ``work`` seconds at full speed, ``usage`` per link."""

    work: float
    usage: dict
    event: object
    done: float = 0.0  # seconds of stand-alone transfer completed (progress)
    rate: float = 1.0  # current fraction of its stand-alone speed


@dataclass
class Record:
    """One finished collective: what ran, when, and how long it would take alone."""

    collective: str
    algorithm: str
    nbytes: int
    ranks: tuple
    start: float
    end: float
    alone: float
    tag: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def slowdown(self) -> float:
        return self.seconds / self.alone if self.alone > 0 else 1.0


@dataclass
class Fabric:
    """Shared links of *topology* in SimPy environment *env* (see the module docs)."""

    env: object
    topology: object
    device: object = None
    records: list = field(default_factory=list)

    def __post_init__(self):
        self._flows: list[Flow] = []
        self._priced: dict[tuple, tuple] = {}
        self._last = self.env.now
        self._generation = 0
        if isinstance(self.topology, str):
            import labsim

            self.topology = labsim.topology(self.topology)
        if self.device is not None and hasattr(self.topology, "with_device"):
            self.topology = self.topology.with_device(self.device)

    # -- public ------------------------------------------------------------------------------

    def collective(
        self, collective: str, nbytes: int, ranks, algorithm: str = "auto", tag: str = "",
        record: bool = True,
    ):
        """Generator: run one collective; ``yield from`` it; returns the seconds it took.

        Each distinct (collective, size, ranks, algorithm) is priced once per fabric (a
        training iteration repeats the same hand-offs and bucket collectives thousands of
        times). ``record=False`` keeps it out of :attr:`records`.
        """
        key = (str(collective).lower(), int(nbytes),
               ranks if isinstance(ranks, int) else tuple(ranks), str(algorithm))
        hit = self._priced.get(key)
        if hit is None:
            hit = self._priced[key] = self._price(collective, nbytes, ranks, algorithm)
        name, chosen, priced = hit
        start = self.env.now
        for phase in priced.phases:
            if phase.latency > 0:
                yield self.env.timeout(phase.latency)
            if phase.transfer > 0:
                yield self._transfer(phase.transfer, dict(phase.usage))
        if record:
            rank_tuple = tuple(range(ranks)) if isinstance(ranks, int) else tuple(ranks)
            self.records.append(
                Record(name, chosen, int(nbytes), rank_tuple, start, self.env.now, priced.seconds, tag)
            )
        return self.env.now - start

    def _price(self, collective, nbytes, ranks, algorithm):
        """``(operation name, algorithm chosen, Priced)`` of one call alone on the topology."""
        from labsim_collectives.plugin import BY_NAME, CollectiveOp

        op = BY_NAME.get(str(collective).lower())
        if op is None:
            op = next((o for o in BY_NAME.values() if collective in o.aliases), None)
        if not isinstance(op, CollectiveOp):
            raise UsageError(f"no collective {collective!r}; available: {', '.join(BY_NAME)}")
        ranks = list(ranks) if not isinstance(ranks, int) else ranks
        chosen, priced = op.cost(nbytes, ranks=ranks, topology=self.topology, algorithm=algorithm)
        return op.name, chosen, priced

    def run(self, collective: str, nbytes: int, ranks, algorithm: str = "auto", tag: str = ""):
        """The collective as a SimPy process (an event whose value is the seconds it took)."""
        return self.env.process(self.collective(collective, nbytes, ranks, algorithm, tag))

    @property
    def active_flows(self) -> int:
        return len(self._flows)

    # -- flows -------------------------------------------------------------------------------

    def _transfer(self, work: float, usage: dict):
        self._settle()
        flow = Flow(work, usage, self.env.event())
        self._flows.append(flow)
        self._reschedule()
        return flow.event

    def _settle(self) -> None:
        """Advance every active flow's progress to now at its current rate."""
        elapsed = self.env.now - self._last
        if elapsed > 0:
            for flow in self._flows:
                flow.done = min(flow.work, flow.done + flow.rate * elapsed)
        self._last = self.env.now

    def _reschedule(self) -> None:
        """Finish flows that are done, recompute fair rates, wake up at the next finish."""
        finished = [f for f in self._flows if f.work - f.done <= _EPS * max(1.0, f.work)]
        for flow in finished:
            self._flows.remove(flow)
            flow.done = flow.work
            flow.event.succeed()
        max_min_rates(self._flows)
        self._generation += 1
        if self._flows:
            wait = min((f.work - f.done) / f.rate for f in self._flows)
            self.env.process(self._wake(max(wait, 0.0), self._generation))

    def _wake(self, delay: float, generation: int):
        yield self.env.timeout(delay)
        if generation == self._generation:
            self._settle()
            self._reschedule()


def max_min_rates(flows: list) -> None:
    """Set each flow's ``rate`` (0..1 of its stand-alone speed) to the max-min fair share.

    Constraint per link direction r: Σ_f rate_f · usage_f[r] ≤ 1. Progressive filling: raise
    all unfrozen rates equally until a link saturates or a flow reaches 1; freeze; repeat.
    """
    residual: dict = {}
    for flow in flows:
        flow.rate = 0.0
        for res in flow.usage:
            residual[res] = 1.0
    active = [f for f in flows]
    while active:
        step = min(1.0 - f.rate for f in active)
        demand: dict = {}
        for f in active:
            for res, u in f.usage.items():
                demand[res] = demand.get(res, 0.0) + u
        for res, d in demand.items():
            if d > 0:
                step = min(step, residual[res] / d)
        step = max(step, 0.0)
        for f in active:
            f.rate += step
        for res, d in demand.items():
            residual[res] -= step * d
        full = {res for res, d in demand.items() if d > 0 and residual[res] <= 1e-12}
        active = [f for f in active if f.rate < 1.0 - 1e-12 and not (full & f.usage.keys())]
    for flow in flows:
        flow.rate = max(flow.rate, 1e-9)
